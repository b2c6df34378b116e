//! `sessionguard audit init --har FILE`: a draft recipe from a browser's HAR
//! export of a login.
//!
//! It finds the login request (a POST carrying a password field), the session
//! cookie or bearer token its answer set, and a later authenticated GET to use as
//! the probe; a logout and a password change if the recording has them. The
//! recorded username, password and token values are never copied into the draft.

use serde_json::Value;

struct Entry<'a> {
    method: String,
    url: String,
    req: &'a Value,
    res: &'a Value,
}

fn headers<'a>(v: &'a Value, name: &str) -> Vec<&'a str> {
    v.get("headers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|h| {
            h.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .filter_map(|h| h.get("value").and_then(Value::as_str))
        .collect()
}

fn split_url(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = path.split('#').next().unwrap_or("/");
    Some((format!("{scheme}://{host}"), path.to_owned()))
}

/// The fields of a request body: form params, a form-encoded text or a JSON object.
fn body_fields(req: &Value) -> (bool, Vec<(String, String)>) {
    let Some(post) = req.get("postData") else {
        return (false, Vec::new());
    };
    let mime = post.get("mimeType").and_then(Value::as_str).unwrap_or("");
    let text = post.get("text").and_then(Value::as_str).unwrap_or("");
    if (mime.contains("json") || text.trim_start().starts_with('{'))
        && let Ok(Value::Object(m)) = serde_json::from_str::<Value>(text)
    {
        let fields = m
            .into_iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, s)
            })
            .collect();
        return (true, fields);
    }

    if let Some(params) = post.get("params").and_then(Value::as_array) {
        let fields = params
            .iter()
            .filter_map(|p| {
                Some((
                    p.get("name")?.as_str()?.to_owned(),
                    p.get("value")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                ))
            })
            .collect();
        return (false, fields);
    }
    let fields = text
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    (false, fields)
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 3 <= bytes.len() => {
                let hex = |c: u8| char::from(c).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_password(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("pass") || n == "pwd"
}

fn is_username(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["user", "email", "login", "name", "account"]
        .iter()
        .any(|w| n.contains(w))
}

fn is_csrf(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["csrf", "xsrf", "authenticity", "token", "nonce"]
        .iter()
        .any(|w| n.contains(w))
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// A regex capturing `value` where it appears in `page`.
fn csrf_regex(page: &str, field: &str, value: &str) -> String {
    let attr = format!("name=\"{field}\"");
    if let Some(i) = page.find(&attr) {
        let tail = &page[i..];
        if let Some(v) = tail.find(value) {
            let between = &tail[attr.len()..v];
            if between.len() < 40 && !between.contains('>') {
                return format!(
                    "{}{}([^\"]+)",
                    regex::escape(&attr),
                    regex::escape(between).replace(' ', r"\s+")
                );
            }
        }
    }
    format!("{}\\s*[=:]\\s*[\"']([^\"']+)", regex::escape(field))
}

/// Drafts a recipe from HAR text.
pub fn draft(har: &str) -> Result<String, String> {
    let v: Value =
        serde_json::from_str(har).map_err(|e| format!("the HAR file is not JSON: {e}"))?;
    let entries: Vec<Entry<'_>> = v
        .pointer("/log/entries")
        .and_then(Value::as_array)
        .ok_or("the HAR file has no log.entries")?
        .iter()
        .filter_map(|e| {
            let req = e.get("request")?;
            Some(Entry {
                method: req.get("method")?.as_str()?.to_ascii_uppercase(),
                url: req.get("url")?.as_str()?.to_owned(),
                req,
                res: e.get("response")?,
            })
        })
        .collect();
    let (li, login) = entries
        .iter()
        .enumerate()
        .find(|(_, e)| {
            e.method == "POST" && body_fields(e.req).1.iter().any(|(k, _)| is_password(k))
        })
        .ok_or("no login request found: no POST in the recording carries a password field")?;
    let (target, login_path) = split_url(&login.url).ok_or("the login URL is not absolute")?;
    let (json, fields) = body_fields(login.req);
    let mut out = String::new();
    out.push_str("# Drafted by `sessionguard audit init --har` from a browser recording of a\n");
    out.push_str("# login. Check every value; the recorded credentials were left out.\n\n");
    out.push_str(&format!("target = {}\n\n", toml_str(&target)));
    out.push_str("[credentials]\nusername = \"audit-user\"                # the account to audit with\npassword_env = \"AUDIT_PASSWORD\"\nnew_password_env = \"AUDIT_NEW_PASSWORD\"\n\n");
    out.push_str(&format!("[login]\npath = {}\n", toml_str(&login_path)));
    out.push_str(&format!(
        "body = \"{}\"\n",
        if json { "json" } else { "form" }
    ));
    let mut csrf = None;
    let mut parts = Vec::new();
    for (k, val) in &fields {
        if is_password(k) {
            parts.push(format!("{} = \"{{password}}\"", toml_str(k)));
        } else if is_username(k) && !is_csrf(k) {
            parts.push(format!("{} = \"{{username}}\"", toml_str(k)));
        } else if is_csrf(k) && val.len() >= 8 {
            csrf = Some((k.clone(), val.clone()));
        } else {
            parts.push(format!("{} = {}", toml_str(k), toml_str(val)));
        }
    }
    out.push_str(&format!("fields = {{ {} }}\n", parts.join(", ")));
    if let Some((field, value)) = &csrf {
        let page = entries[..li].iter().rev().find(|e| {
            e.method == "GET"
                && e.res
                    .pointer("/content/text")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.contains(value.as_str()))
        });
        match page {
            Some(p) => {
                let (_, path) = split_url(&p.url).unwrap_or_default();
                let text = p.res.pointer("/content/text").and_then(Value::as_str).unwrap_or("");
                out.push_str(&format!("csrf_page = {}\n", toml_str(&path)));
                out.push_str(&format!("csrf_regex = '{}'\n", csrf_regex(text, field, value)));
                out.push_str(&format!("csrf_field = {}\n", toml_str(field)));
            }
            None => out.push_str(&format!(
                "# The login sends an anti-CSRF field {field}; give csrf_page, csrf_regex and csrf_field.\n"
            )),
        }
    }
    // The session: a cookie the login set, or a token in its JSON answer.
    let set: Vec<(String, bool)> = headers(login.res, "set-cookie")
        .iter()
        .filter_map(|h| crate::cookie::SetCookie::parse(h))
        .filter(|c| !c.deletes())
        .map(|c| (c.name, c.http_only))
        .chain(
            login
                .res
                .get("cookies")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    Some((
                        c.get("name")?.as_str()?.to_owned(),
                        c.get("httpOnly").and_then(Value::as_bool).unwrap_or(false),
                    ))
                }),
        )
        .collect();
    let sessiony = |n: &str| {
        let n = n.to_ascii_lowercase();
        ["sess", "sid", "auth", "token", "jwt", "login", "connect"]
            .iter()
            .any(|w| n.contains(w))
    };
    let cookie = set
        .iter()
        .find(|(n, _)| sessiony(n))
        .or_else(|| set.iter().find(|(_, h)| *h))
        .or_else(|| set.first())
        .map(|(n, _)| n.clone());
    let answer: Option<Value> = login
        .res
        .pointer("/content/text")
        .and_then(Value::as_str)
        .and_then(|t| serde_json::from_str(t).ok());
    let token_key = |keys: &[&str]| {
        answer.as_ref().and_then(Value::as_object).and_then(|m| {
            keys.iter()
                .find(|k| m.contains_key(**k))
                .map(|k| (*k).to_owned())
        })
    };
    let bearer = token_key(&["access_token", "accessToken", "token", "jwt", "id_token"]);
    out.push_str("\n[session]\n");
    let mut auth_cookie = None;
    match (&cookie, &bearer) {
        (Some(c), _) => {
            out.push_str(&format!("cookie = {}\n", toml_str(c)));
            auth_cookie = Some(c.clone());
        }
        (None, Some(b)) => out.push_str(&format!("bearer = {}\n", toml_str(b))),
        (None, None) => out.push_str(
            "# The login answer set no cookie and carried no token field: give cookie or bearer.\ncookie = \"sessionid\"\n",
        ),
    }
    // The probe: a later GET that carried the session.
    let asset = |u: &str| {
        let p = u.split('?').next().unwrap_or("").to_ascii_lowercase();
        [
            ".js", ".css", ".png", ".jpg", ".svg", ".ico", ".woff", ".woff2", ".gif", ".map",
        ]
        .iter()
        .any(|x| p.ends_with(x))
    };
    let probe = entries[li + 1..].iter().find(|e| {
        let status = e.res.get("status").and_then(Value::as_u64).unwrap_or(0);
        let carries = match &auth_cookie {
            Some(c) => headers(e.req, "cookie")
                .iter()
                .any(|h| h.split(';').any(|p| p.trim().starts_with(&format!("{c}=")))),
            None => !headers(e.req, "authorization").is_empty(),
        };
        e.method == "GET" && status == 200 && carries && !asset(&e.url)
    });
    out.push_str("\n[probe]\n");
    match probe.and_then(|p| split_url(&p.url)) {
        Some((_, path)) => out.push_str(&format!("path = {}\nlogged_in = {{ status = 200 }}\n", toml_str(&path))),
        None => out.push_str("# No authenticated GET after the login in the recording: name a page only a logged-in user sees.\npath = \"/me\"\nlogged_in = { status = 200 }\n"),
    }
    let find = |words: &[&str]| {
        entries.iter().enumerate().find(|(i, e)| {
            let p = split_url(&e.url)
                .map(|x| x.1.to_ascii_lowercase())
                .unwrap_or_default();
            *i != li && words.iter().any(|w| p.contains(w))
        })
    };
    match find(&[
        "logout", "log-out", "log_out", "signout", "sign-out", "sign_out",
    ]) {
        Some((_, e)) => out.push_str(&format!(
            "\n[logout]\npath = {}\nmethod = {}\n",
            toml_str(&split_url(&e.url).map(|x| x.1).unwrap_or_default()),
            toml_str(&e.method)
        )),
        None => out.push_str("\n# [logout]\n# path = \"/logout\"\n"),
    }
    match find(&["password"]) {
        Some((_, e)) if e.method != "GET" => {
            let (json, fields) = body_fields(e.req);
            let f: Vec<String> = fields
                .iter()
                .map(|(k, _)| {
                    let n = k.to_ascii_lowercase();
                    let v = if n.contains("old") || n.contains("current") {
                        "{password}"
                    } else {
                        "{new_password}"
                    };
                    format!("{} = \"{v}\"", toml_str(k))
                })
                .collect();
            out.push_str(&format!(
                "\n[password_change]\npath = {}\nbody = \"{}\"\nfields = {{ {} }}\n",
                toml_str(&split_url(&e.url).map(|x| x.1).unwrap_or_default()),
                if json { "json" } else { "form" },
                f.join(", ")
            ));
        }
        _ => out.push_str("\n# [password_change]\n# path = \"/password\"\n# fields = { current_password = \"{password}\", new_password = \"{new_password}\" }\n"),
    }
    if let Some(r) = token_key(&["refresh_token", "refreshToken"]) {
        out.push_str(&format!(
            "\n# The login answer carries a refresh token ({r}); describe the refresh request:\n# [refresh]\n# path = \"/token\"\n# fields = {{ grant_type = \"refresh_token\", refresh_token = \"{{refresh_token}}\" }}\n# token_field = {}\n",
            toml_str(&r)
        ));
    }
    out.push_str("\n[claims]                  # what the app claims; absent values: NIST SP 800-63B-4 AAL2\n# idle_timeout = \"30m\"\n# absolute_timeout = \"12h\"\n# max_sessions = 1\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn har() -> String {
        json!({"log": {"entries": [
            {"request": {"method": "GET", "url": "http://127.0.0.1:8000/accounts/login/", "headers": []},
             "response": {"status": 200, "headers": [{"name": "Set-Cookie", "value": "csrftoken=abcdefghijklmnop; Path=/"}],
                          "content": {"text": "<input type=\"hidden\" name=\"csrfmiddlewaretoken\" value=\"MASKEDtoken123456\">"}}},
            {"request": {"method": "POST", "url": "http://127.0.0.1:8000/accounts/login/", "headers": [],
                         "postData": {"mimeType": "application/x-www-form-urlencoded",
                                      "text": "csrfmiddlewaretoken=MASKEDtoken123456&username=bob&password=hunter2%21&next=%2F"}},
             "response": {"status": 302, "headers": [{"name": "Set-Cookie", "value": "sessionid=s3cr3tsessionvalue; HttpOnly; Path=/"}], "content": {"text": ""}}},
            {"request": {"method": "GET", "url": "http://127.0.0.1:8000/static/app.js", "headers": [{"name": "Cookie", "value": "sessionid=s3cr3tsessionvalue"}]},
             "response": {"status": 200, "headers": [], "content": {}}},
            {"request": {"method": "GET", "url": "http://127.0.0.1:8000/me/", "headers": [{"name": "Cookie", "value": "csrftoken=x; sessionid=s3cr3tsessionvalue"}]},
             "response": {"status": 200, "headers": [], "content": {"text": "hi bob"}}},
            {"request": {"method": "POST", "url": "http://127.0.0.1:8000/accounts/logout/", "headers": []},
             "response": {"status": 302, "headers": [], "content": {}}}
        ]}})
        .to_string()
    }

    #[test]
    fn a_form_login_recording_drafts_a_working_recipe_without_its_secrets() {
        let text = draft(&har()).unwrap();
        for secret in ["bob", "hunter2", "s3cr3tsessionvalue", "MASKEDtoken123456"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("path = \"/accounts/login/\""), "{text}");
        assert!(text.contains("cookie = \"sessionid\""), "{text}");
        assert!(
            text.contains("csrf_field = \"csrfmiddlewaretoken\""),
            "{text}"
        );
        assert!(text.contains("path = \"/me/\""), "{text}");
        assert!(text.contains("path = \"/accounts/logout/\""), "{text}");
        let r = crate::recipe::Recipe::parse(&text, |v| Some(format!("pw of {v}"))).unwrap();
        let csrf = r.login.csrf.unwrap();
        let page = "<input type=\"hidden\" name=\"csrfmiddlewaretoken\" value=\"OTHER\">";
        assert_eq!(&csrf.regex.captures(page).unwrap()[1], "OTHER");
    }

    #[test]
    fn a_json_login_drafts_a_bearer_session() {
        let h = json!({"log": {"entries": [
            {"request": {"method": "POST", "url": "https://api.example.test/v1/login",
                         "postData": {"mimeType": "application/json", "text": "{\"email\":\"a@b.c\",\"password\":\"x\"}"}},
             "response": {"status": 200, "headers": [], "content": {"text": "{\"access_token\":\"eyJ.x.y\",\"refresh_token\":\"r\"}"}}},
            {"request": {"method": "GET", "url": "https://api.example.test/v1/me", "headers": [{"name": "Authorization", "value": "Bearer eyJ.x.y"}]},
             "response": {"status": 200, "headers": [], "content": {}}}
        ]}});
        let text = draft(&h.to_string()).unwrap();
        assert!(text.contains("bearer = \"access_token\""), "{text}");
        assert!(text.contains("body = \"json\""), "{text}");
        assert!(text.contains("path = \"/v1/me\""), "{text}");
        assert!(text.contains("# [refresh]"), "{text}");
        assert!(!text.contains("a@b.c"));
        crate::recipe::Recipe::parse(&text, |v| Some(format!("pw of {v}"))).unwrap();
    }

    #[test]
    fn a_recording_without_a_login_is_an_error() {
        let e = draft(r#"{"log":{"entries":[]}}"#).unwrap_err();
        assert!(e.contains("no login request"), "{e}");
        assert!(draft("not json").is_err());
    }
}
