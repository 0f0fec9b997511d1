//! Assembles Duet's services into one process.
//!
//! `duet serve` runs every service; `--only` runs a subset, so each can be
//! scaled out on its own. All HTTP services share one listener.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use duet_command_api::Commands;
use duet_common::body_schemas::BodySchemas;
use duet_common::http::{Served, ops_routes, wrap};
use duet_common::metrics::Routes;
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

/// Every route template of the process with its methods, for the metrics'
/// `route` label and the `Allow` header of a 405.
fn served_routes(spec: &serde_json::Value, gateway: bool) -> Routes {
    let operations = spec["paths"]
        .as_object()
        .map(|paths| {
            paths.iter().map(|(path, item)| (path.clone(), item.as_object().map(|ops| ops.keys().cloned().collect()).unwrap_or_default()))
        })
        .into_iter()
        .flatten();
    let fixed = ["/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/asyncapi.yaml", "/asyncapi.json"]
        .map(|path| (path.to_owned(), vec!["GET".to_owned(), "HEAD".to_owned()]));
    let ws = gateway.then(|| ("/ws".to_owned(), vec!["GET".to_owned()]));
    Routes::new(operations.chain(fixed).chain(ws))
}

/// The published document at `/openapi.json` and in the API page at `/docs`.
fn spec_routes(route: Route, api: &OpenApiService<FullApi, ()>, spec: String) -> Route {
    // poem's page embeds its own document; it gets the published one.
    let page = api.swagger_ui_html().replace(&api.spec(), &spec);
    route
        .at("/openapi.json", poem::endpoint::make_sync(move |_| spec.clone().with_content_type("application/json")))
        .at("/docs", poem::endpoint::make_sync(move |_| poem::web::Html(page.clone())))
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
    services: Vec<Service>,
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
    /// Connects to PostgreSQL and Redis, applies migrations and binds the listener.
    pub async fn build(settings: Settings, services: &[Service]) -> anyhow::Result<Self> {
        let ctx = AppContext::build(settings).await?;
        // The command side enqueues jobs even where no worker runs.
        duet_jobs::setup(&ctx.db).await?;
        let acceptor = TcpListener::bind(ctx.settings.http_addr)
            .into_acceptor()
            .await
            .with_context(|| format!("Failed to bind {}", ctx.settings.http_addr))?;
        let addr = acceptor.local_addr().first().and_then(|a| a.as_socket_addr().copied()).context("the listener has no address")?;
        Ok(Application { ctx, acceptor: NoDelay(acceptor), addr, services: services.to_vec() })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn context(&self) -> &AppContext {
        &self.ctx
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Application { ctx, acceptor, addr, services } = self;
        let serves = |s| services.contains(&s);
        let job_metrics = duet_jobs::JobMetrics::register(&ctx.metrics);
        // The gateway sends through the same Commands (append writers) as REST.
        let commands = (serves(Service::CommandApi) || serves(Service::Realtime)).then(|| Commands::start(&ctx));
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
        let routes = served_routes(&document, gateway.is_some());
        let bodies = BodySchemas::from_openapi(&document);
        let mut route = spec_routes(ops_routes(Route::new()), &api, spec);
        if let Some(gateway) = &gateway {
            route = route.at("/ws", gateway.endpoint());
        }
        let app = route
            .at("/asyncapi.yaml", asyncapi_endpoint("application/yaml", duet_common::protocol::asyncapi::document()))
            .at("/asyncapi.json", asyncapi_endpoint("application/json", duet_common::protocol::asyncapi::document_json()))
            .nest("/", api.into_endpoint().with_if(!ctx.settings.allowed_origins.is_empty(), cors(&ctx.settings.allowed_origins)))
            .data(ctx.jwt.clone())
            .data(ctx.clone());
        tracing::info!(%addr, ?services, node = %ctx.node_id, "duet listening");
        let shutdown = shutdown.shared();
        let jobs_shutdown = shutdown.clone();
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
        let http = server::serve(
            acceptor,
            wrap(app, ctx.metrics.clone(), routes, bodies, Duration::from_secs(ctx.settings.http_body_timeout_secs)),
            Duration::from_secs(ctx.settings.http_header_timeout_secs.max(1)),
            http_shutdown,
            Duration::from_secs(30),
        );
        // Joined, not spawned: dropping this future (a crash, or a test
        // aborting the node) stops the workers mid-job, as a crash would.
        let (http, jobs) = tokio::join!(http, jobs);
        if let Some(projector) = projector {
            projector.stop().await;
        }
        http.context("HTTP server failed")?;
        jobs.context("Job workers failed")
    }
}

/// The relay and the projections, and the push triggers on the same stream.
async fn start_projector(ctx: AppContext, job_metrics: duet_jobs::JobMetrics) -> anyhow::Result<duet_projector::Projector> {
    let mut config = duet_projector::ProjectorConfig::new(format!("projector-{}", ctx.node_id));
    config.relay_poll = Duration::from_millis(ctx.settings.relay_poll_ms.max(1));
    let mut projector = duet_projector::Projector::start(&ctx, config).await?;
    // Pushes are decided from the same stream: events become jobs.
    let triggers = duet_jobs::Triggers::new(&ctx, job_metrics);
    projector.add_group(&ctx, duet_jobs::trigger::GROUP, "push-triggers", triggers).await?;
    Ok(projector)
}
