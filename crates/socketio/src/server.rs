use crate::adapter::{Adapter, MemoryAdapter};
use crate::client::SioHandler;
use crate::config::{LimitStats, SocketIoConfig};
use crate::middleware::{EventMiddleware, Rejection};
use crate::namespace::{ConnectError, Namespace};
use crate::observe::{Observer, Observers};
use crate::operators::BroadcastOperator;
use crate::socket::DisconnectReason;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use switchyard_engine::{Engine, EngineService};

type AdapterFactory = dyn Fn(&str) -> Arc<dyn Adapter> + Send + Sync;
type NamespaceMatcher = dyn Fn(&str) -> bool + Send + Sync;
/// Server-wide connect middleware (see [`SocketIoBuilder::connect_middleware`]).
pub(crate) type ConnectMiddleware =
    Arc<dyn Fn(Arc<crate::Socket>) -> futures_util::future::BoxFuture<'static, Result<(), ConnectError>> + Send + Sync>;

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
    adapter_factory: Box<AdapterFactory>,
    pub(crate) observers: Arc<Observers>,
    /// Server-wide message middleware, run before every namespace's. Fixed by the builder, so an
    /// event reads it without a lock or a shared atomic.
    event_middleware: Box<[EventMiddleware]>,
    /// Server-wide connect middleware, run before every namespace's own. Fixed by the builder.
    pub(crate) connect_middleware: Box<[ConnectMiddleware]>,
    pub(crate) limit_stats: Arc<LimitStats>,
}

impl ServerInner {
    /// Runs the server-wide message middleware (a length check when there is none).
    #[inline]
    pub(crate) fn run_event_middleware(
        &self,
        socket: &Arc<crate::Socket>,
        event: &str,
        payload: &crate::Payload,
    ) -> Result<(), Rejection> {
        if self.event_middleware.is_empty() {
            return Ok(());
        }
        crate::middleware::run(&self.event_middleware, socket, event, payload)
    }

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
                Namespace::new_child(
                    name,
                    &parent,
                    self.make_adapter(name),
                    self.config.recovery.clone(),
                    self.observers.clone(),
                    self.config.parser,
                )
            })
            .clone();
        Some(ns)
    }

    fn make_adapter(&self, name: &str) -> Arc<dyn Adapter> {
        (self.adapter_factory)(name)
    }

    pub(crate) fn of(&self, name: &str) -> Arc<Namespace> {
        let name = normalize(name);
        if let Some(ns) = self.namespaces.read().get(name.as_ref()) {
            return ns.clone();
        }
        let mut namespaces = self.namespaces.write();
        namespaces
            .entry(name.to_string())
            .or_insert_with(|| {
                Namespace::new(
                    &name,
                    self.make_adapter(&name),
                    self.config.recovery.clone(),
                    self.observers.clone(),
                    self.config.parser,
                )
            })
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

/// Configures a [`SocketIo`] before any namespace exists, so that every namespace gets the chosen
/// adapter.
///
/// ```
/// use std::sync::Arc;
/// use switchyard_socketio::{Adapter, MemoryAdapter, SocketIo, SocketIoConfig};
/// let io = SocketIo::builder()
///     .config(SocketIoConfig::default())
///     .adapter(|_nsp: &str| Arc::new(MemoryAdapter) as Arc<dyn Adapter>)
///     .build();
/// # let _ = io;
/// ```
#[must_use = "call build() to get the server"]
pub struct SocketIoBuilder {
    config: SocketIoConfig,
    adapter_factory: Box<AdapterFactory>,
    observers: Vec<Arc<dyn Observer>>,
    event_middleware: Vec<EventMiddleware>,
    connect_middleware: Vec<ConnectMiddleware>,
}

impl Default for SocketIoBuilder {
    fn default() -> Self {
        SocketIoBuilder {
            config: SocketIoConfig::default(),
            adapter_factory: Box::new(|_: &str| Arc::new(MemoryAdapter) as Arc<dyn Adapter>),
            observers: Vec::new(),
            event_middleware: Vec::new(),
            connect_middleware: Vec::new(),
        }
    }
}

impl SocketIoBuilder {
    /// The server's options (the defaults of Node's implementation when not called).
    pub fn config(mut self, config: SocketIoConfig) -> Self {
        self.config = config;
        self
    }

    /// How each namespace gets its adapter, called once per namespace with its name (a cluster
    /// adapter, say). The in-memory adapter when not called.
    pub fn adapter(mut self, factory: impl Fn(&str) -> Arc<dyn Adapter> + Send + Sync + 'static) -> Self {
        self.adapter_factory = Box::new(factory);
        self
    }

    /// Registers an observer (see [`Observer`]); may be called several times.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Adds message middleware for every socket of every namespace (static, dynamic children, and
    /// namespaces created after the server is built); may be called several times. It runs before
    /// the namespaces' own middleware; see [`crate::middleware`]. Called on the connection's task for
    /// every event: keep it cheap. Without any, an event pays a length check.
    pub fn event_middleware(
        mut self,
        middleware: impl Fn(&Arc<crate::Socket>, &str, &crate::Payload) -> Result<(), Rejection> + Send + Sync + 'static,
    ) -> Self {
        self.event_middleware.push(Arc::new(middleware));
        self
    }

    /// Adds connect middleware for every namespace (static, dynamic children, and namespaces created
    /// after the server is built), as Node's `io.use()` would be if it covered every namespace; may be
    /// called several times. Each CONNECT runs these first, in registration order, then the
    /// namespace's own ([`Namespace::use_middleware`]); the first `Err` refuses the connection with
    /// CONNECT_ERROR `{message, data}`. Unlike a namespace's middleware, these also run for a
    /// session restored by connection state recovery, whatever
    /// [`RecoveryConfig::skip_middlewares`](crate::RecoveryConfig) says: authentication sees every
    /// socket. The socket is not in its namespace yet: store what the middleware learns in
    /// [`Socket::extensions`](crate::Socket::extensions) and join rooms once connected (an
    /// [`Observer::on_connect`], or the connection handler). Middleware whose future completes at its
    /// first poll (synchronous checks) runs on the connection's task without spawning; one that has to
    /// wait continues in a task of its own.
    pub fn connect_middleware<F, Fut>(mut self, middleware: F) -> Self
    where
        F: Fn(Arc<crate::Socket>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        self.connect_middleware.push(Arc::new(move |socket| Box::pin(middleware(socket))));
        self
    }

    /// The server.
    pub fn build(self) -> SocketIo {
        let SocketIoBuilder { config, adapter_factory, observers, event_middleware, connect_middleware } = self;
        let inner = Arc::new(ServerInner {
            config: config.clone(),
            namespaces: RwLock::default(),
            dynamic: RwLock::default(),
            adapter_factory,
            observers: Arc::new(Observers::new(observers)),
            event_middleware: event_middleware.into_boxed_slice(),
            connect_middleware: connect_middleware.into_boxed_slice(),
            limit_stats: Arc::default(),
        });
        let engine = Engine::new(config.engine.clone(), SioHandler::new(inner.clone()));
        SocketIo { inner, engine }
    }
}

impl SocketIo {
    /// A server with `config` and the in-memory adapter; shorthand for
    /// `SocketIo::builder().config(config).build()`.
    pub fn new(config: SocketIoConfig) -> Self {
        Self::builder().config(config).build()
    }

    /// Configures a server: its options, adapter and observers.
    pub fn builder() -> SocketIoBuilder {
        SocketIoBuilder::default()
    }

    /// Registers an observer of every namespace (see [`Observer`]); observers registered later see
    /// only what happens from then on.
    pub fn observe(&self, observer: Arc<dyn Observer>) {
        self.inner.observers.add(observer);
    }

    /// Refusals of [`SocketIoConfig::max_namespaces_per_connection`] and
    /// [`SocketIoConfig::max_rooms_per_socket`].
    pub fn limit_stats(&self) -> &Arc<LimitStats> {
        &self.inner.limit_stats
    }

    /// The namespace `name`, created if needed.
    pub fn of(&self, name: &str) -> Arc<Namespace> {
        self.inner.of(name)
    }

    /// Namespaces created on demand for every name `matcher` accepts (Node's `io.of(regex)` or
    /// `io.of(fn)`). Configure the returned parent: its middleware and handler serve every child.
    pub fn dynamic_namespace(&self, matcher: impl Fn(&str) -> bool + Send + Sync + 'static) -> Arc<Namespace> {
        let parent = Namespace::new(
            "/_dynamic",
            Arc::new(MemoryAdapter),
            None,
            self.inner.observers.clone(),
            self.inner.config.parser,
        );
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
