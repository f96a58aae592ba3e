//! A relay's admin API as the tests drive it: bearer-token GET/POST, registering points, and
//! the join links of a conference (one place for the tree, chaos and soak tests).

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::Info;
use crate::http::Http;

/// The admin API of the relay at `http`'s base, with the bearer `token`.
pub struct Admin {
    pub http: Http,
    pub token: String,
}

impl Admin {
    /// The demo's relay, with the admin token of its info file.
    pub fn new(info: &Info) -> Result<Admin> {
        Admin::with_token(&info.http_base, &info.key("admin_token")?)
    }

    pub fn with_token(base: &str, token: &str) -> Result<Admin> {
        Ok(Admin {
            http: Http::new(base)?,
            token: token.to_string(),
        })
    }

    /// POST a JSON body; the answer's status must be one of `expect`.
    pub fn post(&self, path: &str, body: Value, expect: &[u16]) -> Result<Value> {
        let a = self.http.post_json(path, Some(&self.token), &body)?;
        ensure!(
            expect.contains(&a.status),
            "POST {path} {body} at {} → {} {}, expected {expect:?}",
            self.http.base,
            a.status,
            a.body
        );
        a.json()
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        let a = self.http.get(path, Some(&self.token))?;
        ensure!(
            a.status == 200,
            "GET {path} at {} → {} {}",
            self.http.base,
            a.status,
            a.body
        );
        a.json()
    }

    /// An organisation and its points.
    pub fn register(&self, org: &str, points: &[&str]) -> Result<()> {
        self.post(
            "/api/v1/organisations",
            json!({"id": org, "name": format!("Org {org}")}),
            &[201],
        )?;
        for p in points {
            self.post(
                "/api/v1/points",
                json!({"id": p, "org_id": org, "name": format!("Point {p}"),
                       "location": "Hall", "expected_headcount": 10}),
                &[201],
            )?;
        }
        Ok(())
    }

    /// The join link (URL) and token of every point for `conference`, by point id.
    pub fn links(&self, conference: &str) -> Result<BTreeMap<String, (String, String)>> {
        let links = self.get(&format!(
            "/api/v1/conferences/{conference}/links?format=json"
        ))?;
        let mut out = BTreeMap::new();
        for link in links.as_array().context("the links API answered no list")? {
            let (Some(point), Some(url)) = (link["point_id"].as_str(), link["url"].as_str()) else {
                bail!("a join link without point_id or url: {link}");
            };
            let token = url
                .split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("token=").or_else(|| kv.strip_prefix("t=")))
                .filter(|t| !t.is_empty())
                .with_context(|| format!("the join link of {point} carries no token: {url}"))?;
            out.insert(point.to_string(), (url.to_string(), token.to_string()));
        }
        Ok(out)
    }
}
