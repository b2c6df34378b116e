//! Device names for people: the browser and operating system a user agent
//! names ("Firefox on Windows 10"), parsed by woothee.

use std::borrow::Cow;

use woothee::parser::Parser;

/// What woothee answers for a part it does not recognise.
const UNKNOWN: &str = "UNKNOWN";

/// The browser and operating system of `user_agent`, or what is known of them.
pub(super) fn name(user_agent: Option<&str>) -> Cow<'static, str> {
    let Some(ua) = user_agent.filter(|ua| !ua.trim().is_empty()) else {
        return Cow::Borrowed("Unknown device");
    };
    let parsed = Parser::new().parse(ua);
    let known = |s: &str| (!s.is_empty() && s != UNKNOWN).then(|| s.to_owned());
    let browser = parsed.as_ref().and_then(|r| known(r.name));
    let os = parsed.as_ref().and_then(|r| known(r.os));
    match (browser, os) {
        (Some(b), Some(os)) => Cow::Owned(format!("{b} on {os}")),
        (Some(b), None) => Cow::Owned(b),
        (None, Some(os)) => Cow::Owned(format!("A browser on {os}")),
        (None, None) => Cow::Borrowed("Unknown device"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_and_systems_are_named() {
        let firefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 \
                       Firefox/128.0";
        assert_eq!(name(Some(firefox)), "Firefox on Windows 10");
        let chromium = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                        HeadlessChrome/120.0.0.0 Safari/537.36";
        assert_eq!(name(Some(chromium)), "Chrome on Linux");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
        assert_eq!(name(Some(iphone)), "Safari on iPhone");
    }

    #[test]
    fn unknown_agents_say_so() {
        assert_eq!(name(None), "Unknown device");
        assert_eq!(name(Some("   ")), "Unknown device");
        assert_eq!(name(Some("zzz-not-a-browser")), "Unknown device");
    }
}
