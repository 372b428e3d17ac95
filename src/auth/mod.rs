//! HTTP basic authentication as ingress-nginx configures it (`auth-type: basic`, `auth-secret`,
//! `auth-secret-type`, `auth-realm`).
//!
//! Pure: this module owns parsing the Secret's htpasswd data, verifying a user's password against it, and the
//! header syntax of `Authorization: Basic` and `WWW-Authenticate`. It must not do I/O, read Secrets, or log:
//! the caller resolves the Secret, builds an [`htpasswd::Htpasswd`] off the request path, and on a parse error
//! serves 503 for the affected paths (never open access).
//!
//! ```text
//! Secret ──► Htpasswd::parse_file (auth-file: key `auth`) ─┐
//!        └─► Htpasswd::from_map   (auth-map: user -> hash) ─┴─► Htpasswd ──┐
//! request ──► basic::parse_authorization(header) ─► (user, password) ──────┴─► verify ─► 401 + challenge | pass
//! ```

pub mod basic;
pub mod htpasswd;
