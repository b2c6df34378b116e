//! `GET /static/{file}`: the pages' script, style sheet and icon, compiled into
//! the binary from `static/`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::extract::PathParam;

/// One static file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every static file. `idle-warning.js` is meant for other apps' pages too.
const ASSETS: [Asset; 4] = [
    Asset {
        name: "idle-warning.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("static/idle-warning.js"),
    },
    Asset {
        name: "account.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("static/account.js"),
    },
    Asset {
        name: "pages.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("static/pages.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("static/favicon.svg"),
    },
];

/// How long browsers may reuse a static file without asking again.
const CACHE_CONTROL: &str = "public, max-age=300";

/// Serves the static file `file`, or 404.
pub(super) async fn serve(PathParam(file): PathParam) -> Response {
    answer(&file)
}

/// `GET /favicon.ico`, which browsers ask for on pages that name no icon (the
/// JSON answers): the SVG icon.
pub(super) async fn favicon() -> Response {
    answer("favicon.svg")
}

fn answer(file: &str) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(asset) => (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(asset.content_type),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(CACHE_CONTROL),
                ),
            ],
            asset.body,
        )
            .into_response(),
        None => ApiError::NotFound.into_response(),
    }
}
