//! The STS's listeners: the token endpoint over TLS (the peer's certificate says who calls) and
//! the plain admin listener. Requests are answered by `app`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use crate::app::Peer;
use crate::app::{app, health};
pub use crate::state::{follow_jwks_urls, open_ledger, unix_now, Sts};
use crate::svid;

fn peer_of(conn: &rustls::ServerConnection, trust_domain: &str) -> Peer {
    match conn.peer_certificates().and_then(|c| c.first()) {
        None => Peer::Anonymous,
        Some(leaf) => match svid::spiffe_id_of(leaf, trust_domain) {
            Ok(id) => Peer::Workload(id),
            Err(why) => Peer::Invalid(why),
        },
    }
}

/// Serves the token endpoint over TLS until the process ends.
pub async fn serve(sts: Arc<Sts>, listener: TcpListener, tls: Arc<rustls::ServerConfig>) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let _ = tcp.set_nodelay(true);
        let (acceptor, sts) = (acceptor.clone(), sts.clone());
        tokio::spawn(async move {
            let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else { return };
            let peer = Arc::new(peer_of(stream.get_ref().1, &sts.cfg.tls.trust_domain));
            let svc = service_fn(move |req| {
                let (sts, peer) = (sts.clone(), peer.clone());
                async move { Ok::<_, Infallible>(app(&sts, req, &peer).await) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Serves health, readiness and metrics over plain HTTP.
pub async fn serve_admin(sts: Arc<Sts>, listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let sts = sts.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let sts = sts.clone();
                async move {
                    let host = req.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok());
                    Ok::<_, Infallible>(health(&sts, req.uri().path(), req.uri().query().unwrap_or(""), host))
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}
