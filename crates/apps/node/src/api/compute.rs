//! Handlers of `/jobs` and `/volunteer`.

use axum::Json;
use axum::extract::{Path, State};
use kith_api as api;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiError;
use crate::Node;

type ApiResult<T> = Result<Json<T>, ApiError>;

/// This module's routes, each declared by its handler's `#[utoipa::path]`; handlers of
/// one path go in one `routes!`.
pub(super) fn routes() -> OpenApiRouter<Node> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs, submit_job))
        .routes(routes!(job, cancel_job))
        .routes(routes!(job_results))
        .routes(routes!(accept_trust))
        .routes(routes!(volunteer_status, volunteer_on, volunteer_off))
}

#[utoipa::path(get, path = "/jobs", security(("token" = [])),
    responses((status = 200, description = "Jobs this node submitted", body = Vec<api::Job>)))]
pub(crate) async fn list_jobs(State(node): State<Node>) -> ApiResult<Vec<api::Job>> {
    Ok(Json(node.jobs()))
}

/// Submits a job: a WebAssembly module and its work units, run by volunteers.
#[utoipa::path(post, path = "/jobs", security(("token" = [])), request_body = api::SubmitJob,
    responses((status = 200, body = api::Job),
        (status = 400, description = "A bad JOB.toml, module or inputs", body = api::ErrorBody)))]
pub(crate) async fn submit_job(
    State(node): State<Node>,
    Json(req): Json<api::SubmitJob>,
) -> ApiResult<api::Job> {
    Ok(Json(node.submit_job(&req).await?))
}

#[utoipa::path(get, path = "/jobs/{job}", security(("token" = [])),
    params(("job" = String, Path, description = "The job's ID")),
    responses((status = 200, body = api::Job), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn job(State(node): State<Node>, Path(job): Path<String>) -> ApiResult<api::Job> {
    Ok(Json(node.job(&job)?))
}

/// Cancels a job: no more units go out; results so far stay.
#[utoipa::path(delete, path = "/jobs/{job}", security(("token" = [])),
    params(("job" = String, Path, description = "The job's ID")),
    responses((status = 200, body = api::Job), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn cancel_job(
    State(node): State<Node>,
    Path(job): Path<String>,
) -> ApiResult<api::Job> {
    Ok(Json(node.cancel_job(&job).await?))
}

/// Accepts the job's results on trust (one trusted volunteer's each) as final: they are
/// no longer reported as on trust, and a later fault of their volunteer no longer sends
/// their units out again.
#[utoipa::path(post, path = "/jobs/{job}/accept-trust", security(("token" = [])),
    params(("job" = String, Path, description = "The job's ID")),
    responses((status = 200, body = api::Job), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn accept_trust(
    State(node): State<Node>,
    Path(job): Path<String>,
) -> ApiResult<api::Job> {
    Ok(Json(node.accept_trust(&job).await?))
}

/// Writes the validated outputs into a folder, one file per unit named after its input.
#[utoipa::path(post, path = "/jobs/{job}/results", security(("token" = [])),
    params(("job" = String, Path, description = "The job's ID")),
    request_body = api::ResultsRequest,
    responses((status = 200, body = api::ResultsWritten), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn job_results(
    State(node): State<Node>,
    Path(job): Path<String>,
    Json(req): Json<api::ResultsRequest>,
) -> ApiResult<api::ResultsWritten> {
    Ok(Json(node.job_results(&job, &req.dir).await?))
}

#[utoipa::path(get, path = "/volunteer", security(("token" = [])),
    responses((status = 200, description = "What this node runs for others", body = api::VolunteerStatus)))]
pub(crate) async fn volunteer_status(State(node): State<Node>) -> ApiResult<api::VolunteerStatus> {
    Ok(Json(node.volunteer_status()))
}

/// Donates cycles within these limits (kept across restarts).
#[utoipa::path(put, path = "/volunteer", security(("token" = [])), request_body = api::VolunteerRequest,
    responses((status = 200, body = api::VolunteerStatus), (status = 400, body = api::ErrorBody)))]
pub(crate) async fn volunteer_on(
    State(node): State<Node>,
    Json(req): Json<api::VolunteerRequest>,
) -> ApiResult<api::VolunteerStatus> {
    Ok(Json(node.volunteer_on(&req).await?))
}

/// Stops taking units; those running finish and are returned.
#[utoipa::path(delete, path = "/volunteer", security(("token" = [])),
    responses((status = 200, body = api::VolunteerStatus)))]
pub(crate) async fn volunteer_off(State(node): State<Node>) -> ApiResult<api::VolunteerStatus> {
    Ok(Json(node.volunteer_off().await?))
}
