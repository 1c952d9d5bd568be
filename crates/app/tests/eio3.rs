//! `engine.allow_eio3` from the configuration to the wire: a real `App` refuses Engine.IO v3 handshakes
//! by default and, with the key set (here through its environment variable), serves a Socket.IO v2
//! client's session: the length-prefixed handshake with the implicit connection to `/`.

use std::net::SocketAddr;
use switchyard::config::Loader;
use switchyard::App;
use switchyard_fixtures::{get, SIO_PATH};
use tokio::sync::oneshot;

async fn start(env: &[(&str, &str)]) -> (SocketAddr, oneshot::Sender<()>) {
    let vars = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let mut config = Loader::new().env(vars).load().expect("valid configuration");
    config.server.host = "127.0.0.1".into();
    config.server.port = 0;
    config.server.chat_page = false;
    let app = App::build(config).expect("app");
    let listener = app.bind().await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

#[tokio::test]
async fn eio3_is_refused_by_default_and_served_when_allowed() {
    let target = format!("{SIO_PATH}?EIO=3&transport=polling&b64=1");
    let (addr, _stop) = start(&[]).await;
    get(addr, &target).await.assert_engine_error(5, "Unsupported protocol version");

    let (addr, _stop) = start(&[("SWITCHYARD_ENGINE_ALLOW_EIO3", "true")]).await;
    let res = get(addr, &target).await;
    assert_eq!(res.status, 200, "{:?}", res.text());
    let body = res.text();
    let (len, rest) = body.split_once(':').expect("a length-prefixed payload");
    let open = &rest[..len.parse::<usize>().expect("length")];
    assert!(open.starts_with("0{\"sid\":"), "{body:?}");
    assert!(rest[open.len()..].starts_with("2:40"), "the server connects `/` at once: {body:?}");
}
