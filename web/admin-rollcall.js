// Roll call panel of the admin dashboard: helper D (rollcall) writes this file; this empty
// placeholder keeps /admin working on its own branch.
