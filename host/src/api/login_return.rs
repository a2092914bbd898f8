//! Where the login form returns to: the dashboard page the administrator opened
//! (an alert mail links `/#/executions/12`). The fragment never reaches the server,
//! so the login form's script copies it into a hidden field; here it is accepted
//! only as a dashboard fragment, so the redirect after login is always `/#/…` on
//! this site (never an open redirect), and it is safe to echo into the form again.

/// Longest fragment carried through the login.
const MAX: usize = 512;

/// `next` if it is a dashboard fragment: `#/` and then only characters of a path and
/// query (no quote, markup, space or backslash), at most [`MAX`] bytes.
pub(super) fn fragment(next: &str) -> Option<&str> {
    let rest = next.strip_prefix("#/")?;
    let plain = |c: char| c.is_ascii_alphanumeric() || "/_-.?=&%~:+,@".contains(c);
    (next.len() <= MAX && rest.chars().all(plain)).then_some(next)
}

/// The redirect after a successful login: `/` plus the fragment when it passes.
pub(super) fn target(next: Option<&str>) -> String {
    format!("/{}", next.and_then(fragment).unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dashboard_fragments_pass() {
        assert_eq!(target(Some("#/executions/12")), "/#/executions/12");
        assert_eq!(
            target(Some("#/executions?project=a-b&status=Error")),
            "/#/executions?project=a-b&status=Error"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "#/x\"><script>",
            "#/a b",
            "executions/1",
            "",
        ] {
            assert_eq!(target(Some(bad)), "/", "{bad:?}");
            assert!(fragment(bad).is_none(), "{bad:?}");
        }
        assert_eq!(target(Some(&format!("#/{}", "a".repeat(600)))), "/");
        assert_eq!(target(None), "/");
    }
}
