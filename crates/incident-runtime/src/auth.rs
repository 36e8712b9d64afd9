//! gRPC bearer tokens with roles, checked in one place for every service: a tower layer in
//! front of the gRPC routes. Without a tokens file every call is allowed (the service logs that
//! it runs open). Health and reflection are always allowed.
//!
//! Roles: `reporter` reads, opens and comments; `responder` also changes status, assignment and
//! priority; `auditor` reads and replays only; `admin` may do everything. The token's name
//! becomes the actor of the commands it sends.
//!
//! ```toml
//! # TOKENS_FILE
//! [[tokens]]
//! name = "alice"
//! role = "responder"
//! token = "a-long-random-string"
//!
//! [[tokens]]
//! name = "auditor"
//! role = "auditor"
//! token_file = "/run/secrets/auditor-token"   # secrets may live in files
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reporter,
    Responder,
    Auditor,
    Admin,
}

/// What a gRPC method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Read,
    Report,
    Respond,
    Admin,
}

impl Role {
    pub fn allows(self, access: Access) -> bool {
        match (self, access) {
            (_, Access::Public) | (Role::Admin, _) => true,
            (Role::Auditor, a) => a == Access::Read,
            (Role::Reporter, a) => matches!(a, Access::Read | Access::Report),
            (Role::Responder, a) => matches!(a, Access::Read | Access::Report | Access::Respond),
        }
    }
}

/// Who called: put in the request's extensions once the token is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// The access a gRPC path (`/package.Service/Method`) needs.
pub fn access_of(path: &str) -> Access {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default();
    let method = parts.next().unwrap_or_default();
    if service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.") {
        return Access::Public;
    }
    let reads = ["Get", "List", "Watch", "Read", "Verify", "Head", "Report"];
    let is_read = reads.iter().any(|p| method.starts_with(p));
    match service {
        "incident.v1.IntakeService" => match method {
            "OpenIncident" | "CommentIncident" => Access::Report,
            m if is_read && !m.is_empty() => Access::Read,
            _ => Access::Respond,
        },
        "incident.v1.SlaService" | "incident.v1.AuditService" => Access::Read,
        s if s.starts_with("incident.v1.") => {
            if is_read {
                Access::Read
            } else {
                Access::Respond
            }
        }
        _ => Access::Admin,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("tokens file {path}: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    role: Role,
    token: Option<String>,
    token_file: Option<String>,
}

/// The accepted tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_token: HashMap<Vec<u8>, Caller>,
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let err = |reason: String| TokensError::Invalid {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let file: TokensFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let mut by_token = HashMap::new();
        for (i, t) in file.tokens.into_iter().enumerate() {
            let secret = match (t.token, t.token_file) {
                (Some(s), None) => s,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .map_err(|e| err(format!("tokens[{i}] ({}): token_file {f}: {e}", t.name)))?
                    .trim()
                    .to_owned(),
                _ => {
                    return Err(err(format!(
                        "tokens[{i}] ({}): give exactly one of token, token_file",
                        t.name
                    )));
                }
            };
            if secret.len() < 16 {
                return Err(err(format!(
                    "tokens[{i}] ({}): a token needs at least 16 characters",
                    t.name
                )));
            }
            if t.name.trim().is_empty() {
                return Err(err(format!("tokens[{i}]: name is empty")));
            }
            let caller = Caller {
                name: t.name,
                role: t.role,
            };
            if by_token.insert(secret.into_bytes(), caller).is_some() {
                return Err(err(format!("tokens[{i}]: the same token twice")));
            }
        }
        if by_token.is_empty() {
            return Err(err("no tokens".into()));
        }
        Ok(Self { by_token })
    }

    /// The caller a bearer token belongs to.
    pub fn caller(&self, token: &str) -> Option<&Caller> {
        // every stored token is compared, in time independent of where they differ
        let mut found = None;
        for (secret, caller) in &self.by_token {
            if constant_time_eq(secret, token.as_bytes()) {
                found = Some(caller);
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a request's `authorization` metadata against `tokens` for the path's access.
pub fn check(
    tokens: &Tokens,
    path: &str,
    authorization: Option<&str>,
) -> Result<Option<Caller>, tonic::Status> {
    let access = access_of(path);
    if access == Access::Public {
        return Ok(None);
    }
    let token = authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| tonic::Status::unauthenticated("a bearer token is required"))?;
    let caller = tokens
        .caller(token)
        .ok_or_else(|| tonic::Status::unauthenticated("unknown token"))?;
    if !caller.role.allows(access) {
        return Err(tonic::Status::permission_denied(format!(
            "{} ({:?}) may not call {path}",
            caller.name, caller.role
        )));
    }
    Ok(Some(caller.clone()))
}

/// The tower layer: put it in front of a tonic server with `Server::builder().layer(..)`.
#[derive(Debug, Clone, Default)]
pub struct AuthLayer {
    tokens: Option<Arc<Tokens>>,
}

impl AuthLayer {
    /// `None`: every call is allowed.
    pub fn new(tokens: Option<Tokens>) -> Self {
        Self {
            tokens: tokens.map(Arc::new),
        }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    tokens: Option<Arc<Tokens>>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower_service::Service<http::Request<B>> for Auth<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        if let Some(tokens) = &self.tokens {
            let auth = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match check(tokens, req.uri().path(), auth) {
                Ok(Some(caller)) => {
                    req.extensions_mut().insert(caller);
                }
                Ok(None) => {}
                Err(status) => {
                    let response = status.into_http();
                    return Box::pin(async move { Ok(response) });
                }
            }
        }
        Box::pin(self.inner.call(req))
    }
}

/// The acting name for a command: the token's name when the call was authenticated, else what
/// the request said.
pub fn actor<T>(request: &tonic::Request<T>, claimed: &str) -> String {
    match request.extensions().get::<Caller>() {
        Some(c) => c.name.clone(),
        None => claimed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_need_the_access_their_role_grants() {
        assert_eq!(access_of("/grpc.health.v1.Health/Check"), Access::Public);
        assert_eq!(
            access_of("/incident.v1.IntakeService/OpenIncident"),
            Access::Report
        );
        assert_eq!(
            access_of("/incident.v1.IntakeService/AcknowledgeIncident"),
            Access::Respond
        );
        assert_eq!(
            access_of("/incident.v1.IntakeService/GetIncident"),
            Access::Read
        );
        assert_eq!(
            access_of("/incident.v1.IntakeService/WatchIncidents"),
            Access::Read
        );
        assert_eq!(access_of("/incident.v1.SlaService/Report"), Access::Read);
        assert_eq!(access_of("/incident.v1.AuditService/ReadLog"), Access::Read);
        assert_eq!(access_of("/other.Service/Do"), Access::Admin);
        assert!(Role::Auditor.allows(Access::Read));
        assert!(!Role::Auditor.allows(Access::Report));
        assert!(Role::Reporter.allows(Access::Report));
        assert!(!Role::Reporter.allows(Access::Respond));
        assert!(Role::Responder.allows(Access::Respond));
        assert!(!Role::Responder.allows(Access::Admin));
        assert!(Role::Admin.allows(Access::Admin));
    }

    #[test]
    fn tokens_load_check_and_refuse() {
        let dir = std::env::temp_dir().join(format!("tokens-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "auditor-secret-0123456789\n").unwrap();
        let file = dir.join("tokens.toml");
        std::fs::write(
            &file,
            format!(
                "[[tokens]]\nname = \"alice\"\nrole = \"responder\"\ntoken = \"alice-secret-0123456789\"\n\
                 [[tokens]]\nname = \"audit\"\nrole = \"auditor\"\ntoken_file = \"{}\"\n",
                secret.display()
            ),
        )
        .unwrap();
        let tokens = Tokens::load(&file).unwrap();
        let ack = "/incident.v1.IntakeService/AcknowledgeIncident";
        let who = check(&tokens, ack, Some("Bearer alice-secret-0123456789")).unwrap();
        assert_eq!(who.unwrap().name, "alice");
        let denied = check(&tokens, ack, Some("Bearer auditor-secret-0123456789")).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        let none = check(&tokens, ack, None).unwrap_err();
        assert_eq!(none.code(), tonic::Code::Unauthenticated);
        let wrong = check(&tokens, ack, Some("Bearer nope")).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert!(check(&tokens, "/grpc.health.v1.Health/Check", None).is_ok());

        std::fs::write(
            &file,
            "[[tokens]]\nname = \"x\"\nrole = \"boss\"\ntoken = \"0123456789abcdefg\"\n",
        )
        .unwrap();
        assert!(Tokens::load(&file).is_err());
        std::fs::write(
            &file,
            "[[tokens]]\nname = \"x\"\nrole = \"admin\"\ntoken = \"short\"\n",
        )
        .unwrap();
        assert!(Tokens::load(&file).unwrap_err().to_string().contains("16"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
