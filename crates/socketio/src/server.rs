use crate::adapter::{Adapter, MemoryAdapter};
use crate::client::SioHandler;
use crate::config::SocketIoConfig;
use crate::namespace::Namespace;
use crate::operators::BroadcastOperator;
use crate::socket::DisconnectReason;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use switchyard_engine::{Engine, EngineService};

type AdapterFactory = dyn Fn(&str) -> Arc<dyn Adapter> + Send + Sync;
type NamespaceMatcher = dyn Fn(&str) -> bool + Send + Sync;

/// A family of namespaces created on first connection when their name matches.
pub(crate) struct DynamicNamespace {
    matcher: Box<NamespaceMatcher>,
    /// The parent: its middleware and connection handler serve every child.
    pub(crate) parent: Arc<Namespace>,
}

pub(crate) struct ServerInner {
    pub(crate) config: SocketIoConfig,
    pub(crate) namespaces: RwLock<HashMap<String, Arc<Namespace>>>,
    dynamic: RwLock<Vec<DynamicNamespace>>,
    adapter_factory: RwLock<Arc<AdapterFactory>>,
}

impl ServerInner {
    pub(crate) fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        if let Some(ns) = self.namespaces.read().get(name) {
            return Some(ns.clone());
        }
        let parent = {
            let dynamic = self.dynamic.read();
            dynamic.iter().find(|d| (d.matcher)(name)).map(|d| d.parent.clone())?
        };
        let mut namespaces = self.namespaces.write();
        let ns = namespaces
            .entry(name.to_string())
            .or_insert_with(|| {
                Namespace::new_child(name, &parent, self.make_adapter(name), self.config.recovery.clone())
            })
            .clone();
        Some(ns)
    }

    fn make_adapter(&self, name: &str) -> Arc<dyn Adapter> {
        (self.adapter_factory.read())(name)
    }

    pub(crate) fn of(&self, name: &str) -> Arc<Namespace> {
        let name = normalize(name);
        if let Some(ns) = self.namespaces.read().get(name.as_ref()) {
            return ns.clone();
        }
        let mut namespaces = self.namespaces.write();
        namespaces
            .entry(name.to_string())
            .or_insert_with(|| Namespace::new(&name, self.make_adapter(&name), self.config.recovery.clone()))
            .clone()
    }
}

fn normalize(name: &str) -> std::borrow::Cow<'_, str> {
    if name.starts_with('/') {
        name.into()
    } else {
        format!("/{name}").into()
    }
}

/// The Socket.IO server: a handle to share freely (cloning is cheap).
#[derive(Clone)]
pub struct SocketIo {
    inner: Arc<ServerInner>,
    engine: Arc<Engine<SioHandler>>,
}

impl SocketIo {
    pub fn new(config: SocketIoConfig) -> Self {
        let inner = Arc::new(ServerInner {
            config: config.clone(),
            namespaces: RwLock::default(),
            dynamic: RwLock::default(),
            adapter_factory: RwLock::new(Arc::new(|_: &str| Arc::new(MemoryAdapter) as Arc<dyn Adapter>)),
        });
        let engine = Engine::new(config.engine.clone(), SioHandler::new(inner.clone()));
        SocketIo { inner, engine }
    }

    /// Sets how each namespace gets its adapter (a cluster adapter, say). Call before the first `of`.
    pub fn set_adapter(&self, factory: impl Fn(&str) -> Arc<dyn Adapter> + Send + Sync + 'static) {
        *self.inner.adapter_factory.write() = Arc::new(factory);
    }

    /// The namespace `name`, created if needed.
    pub fn of(&self, name: &str) -> Arc<Namespace> {
        self.inner.of(name)
    }

    /// Namespaces created on demand for every name `matcher` accepts (Node's `io.of(regex)` or
    /// `io.of(fn)`). Configure the returned parent: its middleware and handler serve every child.
    pub fn dynamic_namespace(&self, matcher: impl Fn(&str) -> bool + Send + Sync + 'static) -> Arc<Namespace> {
        let parent = Namespace::new("/_dynamic", Arc::new(MemoryAdapter), None);
        self.inner.dynamic.write().push(DynamicNamespace { matcher: Box::new(matcher), parent: parent.clone() });
        parent
    }

    /// The engine as a tower service, to mount at `/socket.io/`.
    pub fn service(&self) -> EngineService<SioHandler> {
        self.engine.service()
    }

    pub fn engine(&self) -> &Arc<Engine<SioHandler>> {
        &self.engine
    }

    pub fn config(&self) -> &SocketIoConfig {
        &self.inner.config
    }

    /// Targets room `room` of the main namespace.
    pub fn to(&self, room: impl Into<crate::Room>) -> BroadcastOperator {
        self.of("/").to(room)
    }

    /// Every socket of the main namespace, with an ack timeout.
    pub fn timeout(&self, timeout: Duration) -> BroadcastOperator {
        self.of("/").broadcast().timeout(timeout)
    }

    /// Emits to every socket of the main namespace.
    pub fn emit(&self, event: &str, payload: impl Into<crate::Payload>) {
        self.of("/").emit(event, payload)
    }

    /// All namespaces that exist now.
    pub fn namespaces(&self) -> Vec<Arc<Namespace>> {
        self.inner.namespaces.read().values().cloned().collect()
    }

    /// Disconnects every socket with "server shutting down" (graceful shutdown).
    pub fn close(&self) {
        for ns in self.namespaces() {
            for socket in ns.local_sockets() {
                socket.client().close_connection(DisconnectReason::ServerShutdown);
            }
        }
    }
}
