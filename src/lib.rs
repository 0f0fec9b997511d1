//! Assembles Duet's services into one process.
//!
//! `duet serve` runs every service; `--only` runs a subset, so each can be
//! scaled out on its own. All HTTP services share one public listener;
//! `/metrics` (and, in production, `/docs`) are only on a second, admin
//! listener (`DUET_ADMIN_ADDR`, loopback by default).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use duet_command_api::Commands;
use duet_common::body_schemas::BodySchemas;
use duet_common::http::{Served, health_routes, metrics_routes, wrap};
use duet_common::metrics::Routes;
use duet_common::settings::Environment;
use duet_common::{AppContext, Settings};
use duet_query_api::Queries;
use duet_realtime::Gateway;
use futures_util::FutureExt;
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::middleware::Cors;
use poem::{EndpointExt, IntoEndpoint, IntoResponse, Route};
use poem_openapi::OpenApiService;
use read_side::ReadSide;

mod openapi;
mod read_side;
mod server;
mod tls;

/// The services one process can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Service {
    /// Accounts, conversations, message and receipt appends (REST).
    CommandApi,
    /// Users, conversation lists, history and search (REST).
    QueryApi,
    /// Outbox relay and Redis projections (the read side's writer).
    Projector,
    /// Background jobs: push notifications and lastSeen writes.
    Jobs,
    /// The WebSocket gateway at `/ws`: live delivery, receipts, typing, presence, sync.
    Realtime,
}

impl Service {
    pub const ALL: &'static [Service] = &[Service::CommandApi, Service::QueryApi, Service::Projector, Service::Jobs, Service::Realtime];
}

type FullApi = (Served<duet_command_api::api::CommandApi>, Served<duet_query_api::api::QueryApi>);

fn openapi_service(api: FullApi) -> OpenApiService<FullApi, ()> {
    OpenApiService::new(api, "Duet", env!("CARGO_PKG_VERSION"))
        .description("Realtime 1:1 chat: accounts, conversations, a durable message log, receipts and history. Realtime events are on the WebSocket at `/ws` (see `openapi/asyncapi.yaml`).")
        .server("/")
}

/// The OpenAPI document of every HTTP operation, as committed in `openapi/openapi.json`.
pub fn openapi_spec() -> String {
    published_spec(&openapi_service((Served(None), Served(None))))
}

fn published_spec(api: &OpenApiService<FullApi, ()>) -> String {
    let errors: Vec<_> = duet_command_api::api::errors().chain(duet_query_api::api::errors()).collect();
    openapi::publish(&api.spec(), &errors)
}

/// CORS for browser apps on `DUET_ALLOWED_ORIGINS` (only when some are set:
/// poem's `Cors` with none allows every origin). A request from another
/// origin is refused with 403 `origin_not_allowed`; clients that send no
/// `Origin` (mobile apps) are not concerned.
fn cors(origins: &[String]) -> Cors {
    use poem::http::{Method, header};
    Cors::new()
        .allow_origins(origins.iter().map(String::as_str))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::HeaderName::from_static("x-request-id")])
        .expose_headers([
            header::RETRY_AFTER,
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("x-duet-read-source"),
        ])
        .max_age(600)
}

/// Paths served with GET on both listeners.
const SHARED_PATHS: [&str; 5] = ["/healthz", "/readyz", "/openapi.json", "/asyncapi.yaml", "/asyncapi.json"];

/// Every route template of the public listener with its methods, for the
/// metrics' `route` label and the `Allow` header of a 405.
fn served_routes(spec: &serde_json::Value, gateway: bool, docs: bool) -> Routes {
    let operations = spec["paths"]
        .as_object()
        .map(|paths| {
            paths.iter().map(|(path, item)| (path.clone(), item.as_object().map(|ops| ops.keys().cloned().collect()).unwrap_or_default()))
        })
        .into_iter()
        .flatten();
    let fixed = ["/"].into_iter().chain(SHARED_PATHS).chain(docs.then_some("/docs")).map(readable);
    let ws = gateway.then(|| ("/ws".to_owned(), vec!["GET".to_owned()]));
    Routes::new(operations.chain(fixed).chain(ws))
}

/// The route templates of the admin listener.
fn admin_routes() -> Routes {
    Routes::new(SHARED_PATHS.into_iter().chain(["/metrics", "/docs"]).map(readable))
}

fn readable(path: &str) -> (String, Vec<String>) {
    (path.to_owned(), vec!["GET".to_owned(), "HEAD".to_owned()])
}

/// The published document at `/openapi.json`, and the API page at `/docs` when given.
fn spec_routes(route: Route, spec: String, page: Option<String>) -> Route {
    let route = route.at("/openapi.json", poem::endpoint::make_sync(move |_| spec.clone().with_content_type("application/json")));
    match page {
        Some(page) => route.at("/docs", poem::endpoint::make_sync(move |_| poem::web::Html(page.clone()))),
        None => route,
    }
}

/// `/asyncapi.yaml` and `/asyncapi.json`: the WebSocket protocol's document.
fn asyncapi_routes(route: Route, yaml: String, json: String) -> Route {
    route
        .at("/asyncapi.yaml", asyncapi_endpoint("application/yaml", yaml))
        .at("/asyncapi.json", asyncapi_endpoint("application/json", json))
}

/// Serves the AsyncAPI document of the WebSocket protocol, generated once.
fn asyncapi_endpoint(content_type: &'static str, document: String) -> impl poem::Endpoint<Output = poem::Response> {
    poem::get(poem::endpoint::make_sync(move |_| poem::Response::builder().content_type(content_type).body(document.clone())))
}

/// A built, listening process; `run_until_stopped` serves it.
pub struct Application {
    ctx: AppContext,
    acceptor: NoDelay,
    addr: SocketAddr,
    /// The admin listener: metrics and the API page, kept off the public port.
    admin: TcpAcceptor,
    admin_addr: SocketAddr,
    services: Vec<Service>,
    /// TLS on the public listener, when `DUET_TLS_CERT` and `DUET_TLS_KEY` are set.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Accepts with Nagle's algorithm off. poem leaves it on, and then a small
/// frame (an ack, a delivery) written while the client has not yet
/// acknowledged the previous one waits for the client's delayed ACK: up to
/// 40 ms on Linux, on every second frame of a quiet connection.
struct NoDelay(TcpAcceptor);

impl Acceptor for NoDelay {
    type Io = tokio::net::TcpStream;

    fn local_addr(&self) -> Vec<poem::web::LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(&mut self) -> std::io::Result<(Self::Io, poem::web::LocalAddr, poem::web::RemoteAddr, poem::http::uri::Scheme)> {
        let accepted = self.0.accept().await?;
        accepted.0.set_nodelay(true)?;
        Ok(accepted)
    }
}

impl Application {
    /// Connects to PostgreSQL and Redis, applies migrations and binds the public and admin listeners.
    pub async fn build(settings: Settings, services: &[Service]) -> anyhow::Result<Self> {
        let ctx = AppContext::build(settings).await?;
        let tls = match (&ctx.settings.tls_cert, &ctx.settings.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        // The command side enqueues jobs even where no worker runs.
        duet_jobs::setup(&ctx.db).await?;
        let acceptor = TcpListener::bind(ctx.settings.http_addr)
            .into_acceptor()
            .await
            .with_context(|| format!("Failed to bind {}", ctx.settings.http_addr))?;
        let addr = bound_addr(&acceptor)?;
        let admin = TcpListener::bind(ctx.settings.admin_addr)
            .into_acceptor()
            .await
            .with_context(|| format!("Failed to bind the admin listener on {} (DUET_ADMIN_ADDR)", ctx.settings.admin_addr))?;
        let admin_addr = bound_addr(&admin)?;
        Ok(Application { ctx, acceptor: NoDelay(acceptor), addr, admin, admin_addr, services: services.to_vec(), tls })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound address of the admin listener (useful with port 0).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn context(&self) -> &AppContext {
        &self.ctx
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Application { ctx, acceptor, addr, admin, admin_addr, services, tls } = self;
        let serves = |s| services.contains(&s);
        let job_metrics = duet_jobs::JobMetrics::register(&ctx.metrics);
        // The gateway sends through the same Commands (append writers) as REST.
        let commands = (serves(Service::CommandApi) || serves(Service::Realtime)).then(|| Commands::start(&ctx)).transpose()?;
        let gateway = match (&commands, serves(Service::Realtime)) {
            (Some(commands), true) => Some(Gateway::start(&ctx, commands.clone()).await?),
            _ => None,
        };
        let queries = serves(Service::QueryApi).then(|| Queries::new(&ctx));
        // Threads of its own only where this process runs a read side.
        let has_read_side = serves(Service::Projector) || serves(Service::Jobs);
        let read_side = ReadSide::new(if has_read_side { ctx.settings.read_side_nice } else { 0 })?;
        let projector = match serves(Service::Projector) {
            true => Some(read_side.run(start_projector(ctx.clone(), job_metrics.clone())).await?),
            false => None,
        };
        let api = openapi_service((
            Served(commands.filter(|_| serves(Service::CommandApi)).map(duet_command_api::api::api)),
            Served(queries.map(duet_query_api::api::api)),
        ));
        // The published document, made once: served, and read for metrics labels and error messages.
        let spec = published_spec(&api);
        let document: serde_json::Value = serde_json::from_str(&spec).expect("the published spec is JSON");
        // The API page is public only outside production.
        let public_docs = ctx.settings.env != Environment::Production;
        let routes = served_routes(&document, gateway.is_some(), public_docs);
        let bodies = BodySchemas::from_openapi(&document);
        // poem's page embeds its own document; it gets the published one.
        let page = api.swagger_ui_html().replace(&api.spec(), &spec);
        let (yaml, json) = (duet_common::protocol::asyncapi::document(), duet_common::protocol::asyncapi::document_json());
        let admin_app = asyncapi_routes(
            spec_routes(metrics_routes(health_routes(Route::new())), spec.clone(), Some(page.clone())),
            yaml.clone(),
            json.clone(),
        )
        .data(ctx.clone());
        let mut route = asyncapi_routes(spec_routes(health_routes(Route::new()), spec, public_docs.then_some(page)), yaml, json);
        if let Some(gateway) = &gateway {
            route = route.at("/ws", gateway.endpoint());
        }
        let app = route
            .nest("/", api.into_endpoint().with_if(!ctx.settings.allowed_origins.is_empty(), cors(&ctx.settings.allowed_origins)))
            .data(ctx.jwt.clone())
            .data(ctx.clone());
        tracing::info!(%addr, %admin_addr, tls = tls.is_some(), ?services, node = %ctx.node_id, "duet listening");
        let shutdown = shutdown.shared();
        let jobs_shutdown = shutdown.clone();
        let admin_shutdown = shutdown.clone();
        let jobs = async {
            match serves(Service::Jobs) {
                true => read_side.run(duet_jobs::run(ctx.clone(), job_metrics, jobs_shutdown)).await,
                false => Ok(()),
            }
        };
        // WebSocket connections outlive poem's graceful shutdown: close them
        // (1012, after in-flight sends) before the server stops.
        let http_shutdown = async move {
            shutdown.await;
            if let Some(gateway) = gateway {
                gateway.shutdown(Duration::from_secs(10)).await;
            }
        };
        let (body_timeout, header_timeout) =
            (Duration::from_secs(ctx.settings.http_body_timeout_secs), Duration::from_secs(ctx.settings.http_header_timeout_secs.max(1)));
        let http = server::serve(
            acceptor,
            tls,
            wrap(app, ctx.metrics.clone(), routes, bodies, body_timeout),
            header_timeout,
            http_shutdown,
            Duration::from_secs(30),
        );
        // Same metrics, own route labels: admin paths stay a bounded set.
        let admin_http = server::serve(
            admin,
            None,
            wrap(admin_app, ctx.metrics.clone(), admin_routes(), BodySchemas::default(), body_timeout),
            header_timeout,
            admin_shutdown,
            Duration::from_secs(30),
        );
        // Joined, not spawned: dropping this future (a crash, or a test
        // aborting the node) stops the workers mid-job, as a crash would.
        let (http, admin_http, jobs) = tokio::join!(http, admin_http, jobs);
        if let Some(projector) = projector {
            projector.stop().await;
        }
        http.context("HTTP server failed")?;
        admin_http.context("Admin HTTP server failed")?;
        jobs.context("Job workers failed")
    }
}

fn bound_addr(acceptor: &TcpAcceptor) -> anyhow::Result<SocketAddr> {
    acceptor.local_addr().first().and_then(|a| a.as_socket_addr().copied()).context("the listener has no address")
}

/// The relay and the projections, and the push triggers on the same stream.
async fn start_projector(ctx: AppContext, job_metrics: duet_jobs::JobMetrics) -> anyhow::Result<duet_projector::Projector> {
    let mut config = duet_projector::ProjectorConfig::new(format!("projector-{}", ctx.node_id));
    config.relay_poll = Duration::from_millis(ctx.settings.relay_poll_ms.max(1));
    config.outbox_upkeep_every = Duration::from_secs(ctx.settings.outbox_upkeep_secs.max(1));
    config.outbox_retention = ctx.settings.outbox_retention_hours.map(|h| Duration::from_secs(h * 3600));
    let mut projector = duet_projector::Projector::start(&ctx, config).await?;
    // Pushes are decided from the same stream: events become jobs.
    let triggers = duet_jobs::Triggers::new(&ctx, job_metrics);
    projector.add_group(&ctx, duet_jobs::trigger::GROUP, "push-triggers", triggers).await?;
    Ok(projector)
}
