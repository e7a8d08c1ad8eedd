//! A misbehaving token service for fault tests. It takes the real STS's place (same address, same
//! server certificate, after the test stopped the real one), serves the JWKS and revocation feed
//! the real one last published, and answers `/token` the way the test tells it to.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actorchain_sts::svid;
use actorchain_token::wire::{ExchangeResponse, TT_JWT};
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// How `/token` misbehaves.
#[derive(Debug, Clone)]
pub enum TokenFault {
    /// This status with an empty body.
    Status(u16),
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with a body of this many bytes.
    Oversized(usize),
    /// The right answer shape, but only after this long.
    Slow(Duration),
    /// A well-formed RFC 8693 reply carrying this token.
    Issue(String),
    /// The connection is closed without an answer.
    Reset,
}

pub struct FaultSts {
    fault: Arc<Mutex<TokenFault>>,
    published: Arc<Mutex<Published>>,
    task: JoinHandle<()>,
}

impl Drop for FaultSts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the real STS published, served unchanged for any query.
#[derive(Debug, Clone)]
pub struct Published {
    pub jwks: String,
    pub revocations: String,
}

fn reply(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    r
}

/// `None`: close the connection without answering.
async fn answer(req: &Request<hyper::body::Incoming>, published: &Published, fault: TokenFault) -> Option<Response<Full<Bytes>>> {
    let path = req.uri().path();
    if path.ends_with("jwks.json") {
        return Some(reply(200, published.jwks.clone()));
    }
    if path == "/revocations" {
        return Some(reply(200, published.revocations.clone()));
    }
    if path != "/token" {
        return Some(reply(404, r#"{"error":"not_found"}"#));
    }
    let issued = |token: &str| {
        let answer = ExchangeResponse {
            access_token: token.to_string(),
            issued_token_type: TT_JWT.to_string(),
            token_type: "Bearer".to_string(),
            expires_in: 60,
            scope: String::new(),
        };
        serde_json::to_string(&answer).unwrap_or_default()
    };
    Some(match fault {
        TokenFault::Status(s) => reply(s, ""),
        TokenFault::Garbage => reply(200, "<html>not a token</html>"),
        TokenFault::Oversized(n) => reply(200, "x".repeat(n)),
        TokenFault::Slow(d) => {
            tokio::time::sleep(d).await;
            reply(503, r#"{"error":"temporarily_unavailable"}"#)
        }
        TokenFault::Issue(token) => reply(200, issued(&token)),
        TokenFault::Reset => return None,
    })
}

impl FaultSts {
    /// Listens on `addr` with the STS's certificate from the dev trust domain in `dev`.
    pub async fn start(addr: SocketAddr, dev: &Path, published: Published, fault: TokenFault) -> Result<FaultSts, String> {
        let chain = svid::load_certs(&dev.join("svid/sts.pem")).map_err(|e| e.to_string())?;
        let key = svid::load_key(&dev.join("svid/sts-key.pem")).map_err(|e| e.to_string())?;
        let bundle = svid::load_certs(&dev.join("bundle.pem")).map_err(|e| e.to_string())?;
        let tls = TlsAcceptor::from(Arc::new(svid::server_config(chain, key, &bundle).map_err(|e| e.to_string())?));
        let listener = TcpListener::bind(addr).await.map_err(|e| format!("{addr}: {e}"))?;
        let fault = Arc::new(Mutex::new(fault));
        let published = Arc::new(Mutex::new(published));
        let (current, serving) = (fault.clone(), published.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (tls, serving, current) = (tls.clone(), serving.clone(), current.clone());
                tokio::spawn(async move {
                    let Ok(stream) = tls.accept(tcp).await else { return };
                    let (closer_tx, mut closer_rx) = tokio::sync::mpsc::channel::<()>(1);
                    let svc = service_fn(move |req| {
                        let closer = closer_tx.clone();
                        let fault = current.lock().map(|f| f.clone()).unwrap_or(TokenFault::Reset);
                        let published =
                            serving.lock().map(|p| p.clone()).unwrap_or(Published { jwks: String::new(), revocations: String::new() });
                        async move {
                            match answer(&req, &published, fault).await {
                                Some(r) => Ok::<_, Infallible>(r),
                                None => {
                                    let _ = closer.send(()).await;
                                    std::future::pending().await
                                }
                            }
                        }
                    });
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    // A reset drops the connection mid-request.
                    tokio::select! {
                        _ = conn => {}
                        _ = closer_rx.recv() => {}
                    }
                });
            }
        });
        Ok(FaultSts { fault, published, task })
    }

    /// Serves `jwks` as the key set from now on.
    pub fn set_jwks(&self, jwks: String) {
        if let Ok(mut p) = self.published.lock() {
            p.jwks = jwks;
        }
    }

    pub fn set(&self, fault: TokenFault) {
        if let Ok(mut f) = self.fault.lock() {
            *f = fault;
        }
    }
}
