//! The OpenAPI 3 document and the Swagger UI, both served from the binary.

use super::{exports, files, integrity, meta, schemas, students, submissions};
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "exam-depository", description = "Collects students' exam answer files and serves them to examiners."),
    paths(
        meta::pong, meta::auth_token, meta::healthz, meta::readyz, meta::metrics,
        students::list_students, students::get_student, students::create_student,
        students::delete_student, students::import_students, students::update_student,
        integrity::get_receipt, integrity::get_public_key, integrity::list_audit,
        submissions::create_submission, submissions::get_upload_status,
        submissions::get_download_url, files::download_file, exports::export_submissions,
    ),
    components(schemas(schemas::ErrorBody, crate::domain::student::StudentInput)),
    modifiers(&BearerAuth),
    tags(
        (name = "examiner", description = "Needs `Authorization: Bearer <api key>`"),
        (name = "student", description = "Needs only the student's code"),
        (name = "service", description = "Health and compatibility routes"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `/openapi.json` and `/docs`.
pub fn docs() -> Router {
    SwaggerUi::new("/docs")
        .url("/openapi.json", ApiDoc::openapi())
        .into()
}
