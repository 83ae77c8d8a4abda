//! The OpenAPI document, generated from the API contract's types and the handlers'
//! annotations, so it cannot drift from what the node serves.

use kith_api as api;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{cache, compute, handlers, people, ui, vault};

struct Token;

impl Modify for Token {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kith node API",
        version = "1.0.0",
        description = "Local HTTP API of a kith node. Bound to 127.0.0.1; every route except this document and /metrics needs `Authorization: Bearer <token>` (or the web UI's `kith_token` cookie, set by a login link), with the token from `api.token` in the node's data dir. `GET /content/ID[/path]` (outside /api/v1) serves a file's bytes with range requests; without the token only public content, and only on a loopback address. Requests must name the node itself in `Host` (an IP address or localhost) and carry no `Origin` of another site. Wrong tokens are limited per client address (10 at once, then one per 6 s) and in total (100, then one a second): while limited, requests that carry a token get 429 with `Retry-After`, unchecked. Errors are `{\"error\": \"one line\"}`."
    ),
    servers((url = "/api/v1")),
    paths(
        handlers::status,
        handlers::peers,
        handlers::list_shares,
        handlers::add_share,
        handlers::remove_share,
        handlers::list_downloads,
        handlers::start_download,
        handlers::connect,
        handlers::change_download,
        handlers::cancel_download,
        handlers::search,
        handlers::list_names,
        handlers::publish_name,
        handlers::resolve_name,
        people::person,
        people::link_device,
        people::join_device,
        people::remove_device,
        people::list_groups,
        people::create_group,
        people::invite,
        people::join_group,
        people::members,
        people::remove_member,
        people::leave_group,
        compute::list_jobs,
        compute::submit_job,
        compute::job,
        compute::cancel_job,
        compute::job_results,
        compute::accept_trust,
        compute::volunteer_status,
        compute::volunteer_on,
        compute::volunteer_off,
        vault::list,
        vault::put,
        vault::overview,
        vault::object,
        vault::remove,
        vault::get,
        vault::backup,
        vault::restore,
        cache::status,
        cache::pin,
        cache::unpin,
        ui::login_link,
        ui::history,
        ui::ticket,
        ui::settings,
        ui::change_settings,
        ui::logs,
        ui::events,
    ),
    components(schemas(
        api::ErrorBody, api::Status, api::Connection, api::Relay, api::Share, api::ShareRequest,
        api::DownloadRequest, api::Progress, api::DownloadChange, api::ConnectRequest, api::SearchRequest, api::SearchResult,
        api::PublishRequest, api::ResolveRequest, api::Name,
        api::Person, api::Device, api::LinkCode, api::JoinDevice, api::DeviceRemoved,
        api::Group, api::CreateGroup, api::InviteRequest, api::Invite, api::JoinGroup,
        api::Member, api::SubmitJob, api::Job, api::ResultsRequest, api::ResultsWritten,
        api::VolunteerRequest, api::VolunteerStatus, api::RunningUnit, api::MasterStanding,
        api::VaultPut, api::VaultStored, api::VaultObject, api::VaultGet, api::VaultGot,
        api::VaultRemoved, api::VaultPeer, api::VaultOverview, api::BackupRequest,
        api::PinRequest, api::CacheEntry, api::CacheHint, api::CacheDemand, api::CacheStatus,
        api::LoginLink, api::Transfer, api::Tick, api::Settings, api::SettingsChange, api::LogLine, api::TicketBody, api::PeerRate,
        api::WordIndex,
    )),
    modifiers(&Token)
)]
struct ApiDoc;

/// The document as JSON.
pub(crate) fn document() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}
