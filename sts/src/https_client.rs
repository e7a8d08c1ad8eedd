//! A minimal keep-alive HTTPS/1.1 client over rustls, for talking to an STS: tests, the load
//! generator and the `dev exchange` command. One connection, requests in sequence.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

/// A response: status, the headers the callers look at, and the body as text.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub cache_control: Option<String>,
    pub www_authenticate: Option<String>,
    pub body: String,
}

impl Connection {
    pub async fn connect(addr: SocketAddr, server_name: &str, tls: Arc<rustls::ClientConfig>) -> Result<Connection, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
        let stream = TlsConnector::from(tls).connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Connection { sender, host: server_name.to_string() })
    }

    pub async fn send(&mut self, method: &str, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Result<Reply, String> {
        let ct: Vec<(&str, &str)> = content_type.map(|c| ("content-type", c)).into_iter().collect();
        self.request(method, path, &ct, body).await
    }

    pub async fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Result<Reply, String> {
        let raw: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        self.request_raw(method, path, &raw, body).await
    }

    /// A request whose header values may be any bytes HTTP allows, UTF-8 or not (hardening tests).
    pub async fn request_raw(&mut self, method: &str, path: &str, headers: &[(&str, &[u8])], body: Vec<u8>) -> Result<Reply, String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let mut req = Request::builder().method(method).uri(path).header("host", &self.host);
        for (k, v) in headers {
            req = req.header(*k, hyper::header::HeaderValue::from_bytes(v).map_err(|e| e.to_string())?);
        }
        let req = req.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())?;
        let resp = self.sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from);
        let (cache_control, www_authenticate) = (header("cache-control"), header("www-authenticate"));
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply { status, cache_control, www_authenticate, body: String::from_utf8_lossy(&body).into_owned() })
    }

    pub async fn post_form(&mut self, path: &str, params: &[(&str, &str)]) -> Result<Reply, String> {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        self.send("POST", path, Some("application/x-www-form-urlencoded"), body.into_bytes()).await
    }
}
