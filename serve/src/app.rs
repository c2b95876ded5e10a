//! The router and its handlers: the page, `/v1/styles`, `/v1/stylize`, thumbnails,
//! `/healthz` and `/metrics`, with the token check and request metrics as middleware.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{
    DefaultBodyLimit, FromRequest, MatchedPath, Multipart, Path, Query, Request, State,
};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use infer::{Finish, OutputFormat};
use tch::Tensor;
use tokio::sync::{oneshot, OnceCell, OwnedSemaphorePermit, Semaphore};

use crate::catalogue::{Catalogue, Selection};
use crate::codec::{self, StylizeParams};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::worker::{Incoming, Job, JobStyle, Queue, StylePicture, PICTURE_LABEL};
use crate::{Config, Limits};

const INDEX_HTML: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");
const APP_CSS: &str = include_str!("../static/app.css");
/// The photo thumbnails are rendered on, and the page's sample (CC0, see assets/SOURCES.md).
const SAMPLE_PHOTO: &[u8] = include_bytes!("../../assets/photos/chelsea.png");
/// The longer side of style thumbnails.
const THUMBNAIL_SIZE: u32 = 160;

pub struct AppState {
    pub catalogue: Catalogue,
    queue: Queue,
    /// One permit per stylize request between admission and answer: the queue's capacity.
    admission: Arc<Semaphore>,
    capacity: usize,
    /// Decoding and encoding threads at work at once.
    codec_permits: Semaphore,
    metrics: Arc<Metrics>,
    token: Option<String>,
    limits: Limits,
    timeout: std::time::Duration,
    device: String,
    /// The side style pictures are prepared at for the predictor.
    style_picture_side: u32,
    thumbnails: Vec<OnceCell<Vec<u8>>>,
}

impl AppState {
    pub fn new(
        config: Config,
        catalogue: Catalogue,
        queue: Queue,
        style_picture_side: u32,
        metrics: Arc<Metrics>,
    ) -> Self {
        let thumbnails = catalogue.entries.iter().map(|_| OnceCell::new()).collect();
        Self {
            catalogue,
            queue,
            admission: Arc::new(Semaphore::new(config.queue)),
            capacity: config.queue,
            codec_permits: Semaphore::new(config.threads),
            metrics,
            token: config.token.filter(|t| !t.is_empty()),
            limits: config.limits,
            timeout: config.timeout,
            device: format!("{:?}", config.device).to_lowercase(),
            style_picture_side,
            thumbnails,
        }
    }

    fn in_flight(&self) -> usize {
        self.capacity - self.admission.available_permits()
    }
}

type Shared = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/styles", get(styles))
        .route("/v1/thumbnails/{index}", get(thumbnail))
        .route("/v1/stylize", post(stylize))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let page = Router::new()
        .route(
            "/",
            get(|| async { page(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { page(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/app.css",
            get(|| async { page(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/sample.png",
            get(|| async { page(SAMPLE_PHOTO, "image/png") }),
        )
        .route("/healthz", get(healthz));
    api.merge(page)
        .fallback(|| async { Error::NotFound("no such page or endpoint".into()) })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"error":"method not allowed"}"#,
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), track))
        // The stylize handler reads bodies itself; this covers the multipart reader.
        .layer(DefaultBodyLimit::max(state.limits.max_body))
        .with_state(state)
}

fn page(body: impl Into<Body>, content_type: &'static str) -> Response {
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Counts every answer by route and status, with its latency.
async fn track(State(state): Shared, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.record_request(
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn require_token(State(state): Shared, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same_bytes(given.trim().as_bytes(), token.as_bytes()) {
            return Error::Unauthorized.into_response();
        }
    }
    next.run(request).await
}

/// Compares in time independent of where the first difference is.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn healthz(State(state): Shared) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "device": state.device,
        "styles": state.catalogue.entries.len(),
        "queue_depth": state.queue.depth(),
    });
    json(StatusCode::OK, body)
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn metrics(State(state): Shared) -> Response {
    let text = state.metrics.render(state.queue.depth(), state.in_flight());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn styles(State(state): Shared) -> Response {
    let catalogue = &state.catalogue;
    let styles: Vec<serde_json::Value> = catalogue
        .entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let mut value = serde_json::to_value(entry).unwrap_or_default();
            value["thumbnail"] = format!("/v1/thumbnails/{index}").into();
            value
        })
        .collect();
    let limits = &state.limits;
    let body = serde_json::json!({
        "styles": styles,
        "default": catalogue.entries[catalogue.default_entry].id,
        // A painting as the style: the multipart part `style_image`, run by the built-in
        // arbitrary-style network.
        "style_images": true,
        "limits": {
            "max_body_bytes": limits.max_body,
            "max_pixels": limits.max_pixels,
            "max_size": limits.max_side,
            "default_size": limits.default_size,
            "max_parts": limits.max_parts,
        },
    });
    json(StatusCode::OK, body)
}

async fn thumbnail(State(state): Shared, Path(index): Path<String>) -> Result<Response> {
    let index: usize = index
        .parse()
        .ok()
        .filter(|&i| i < state.thumbnails.len())
        .ok_or_else(|| Error::NotFound(format!("no thumbnail `{index}`")))?;
    let bytes = thumbnail_bytes(&state, index).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        bytes.clone(),
    )
        .into_response())
}

/// The thumbnail of style `index`, rendered on the sample photo the first time it is asked for.
async fn thumbnail_bytes(state: &Arc<AppState>, index: usize) -> Result<&Vec<u8>> {
    state.thumbnails[index]
        .get_or_try_init(|| async {
            let entry = &state.catalogue.entries[index];
            let selection = state.catalogue.select(Some(&entry.id))?;
            // Thumbnails take no place among the requests: each is rendered once, at most one
            // per style, and the queue has room for them beside the admitted requests.
            let image =
                on_codec_thread(state, || codec::decode(SAMPLE_PHOTO, THUMBNAIL_SIZE)).await?;
            let style = JobStyle::Mix(selection);
            let (stylized, _) =
                run_network(state, None, style, image, Finish::default(), None).await?;
            on_codec_thread(state, move || {
                codec::encode(&stylized, OutputFormat::Jpeg, 85)
            })
            .await
        })
        .await
}

/// Renders every thumbnail once, one at a time, so the page finds them ready without the
/// warm-up crowding the queue.
pub async fn render_thumbnails(state: Arc<AppState>) {
    for index in 0..state.thumbnails.len() {
        if thumbnail_bytes(&state, index).await.is_err() {
            // Busy or failed: a later request renders it.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

/// A place in the queue, or 503 at once when it is full.
fn admit(state: &Arc<AppState>) -> Result<OwnedSemaphorePermit> {
    state.admission.clone().try_acquire_owned().map_err(|_| {
        Error::Busy(format!(
            "the server is busy ({} requests in flight); retry later",
            state.capacity
        ))
    })
}

/// Runs plain-Rust image work on a blocking thread, a bounded number at a time.
async fn on_codec_thread<T: Send + 'static>(
    state: &Arc<AppState>,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let _permit = state
        .codec_permits
        .acquire()
        .await
        .map_err(|_| Error::Internal("the server is stopping".into()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(format!("an image worker failed: {e}")))?
}

/// Queues one image for the network and waits for it, holding the request's place in the
/// queue (`permit`) until the answer; `incoming` announced it to the worker while it decoded.
async fn run_network(
    state: &Arc<AppState>,
    permit: Option<OwnedSemaphorePermit>,
    style: JobStyle,
    image: Tensor,
    finish: Finish,
    incoming: Option<Incoming>,
) -> Result<(Tensor, usize)> {
    let (reply, answer) = oneshot::channel();
    state.queue.push(Job {
        style,
        image,
        finish,
        reply,
    })?;
    drop(incoming);
    let answer = answer
        .await
        .map_err(|_| Error::Internal("the network worker has stopped".into()))?;
    drop(permit);
    answer.map_err(|message| Error::Internal(format!("the network failed: {message}")))
}

/// What a stylize request carried.
struct Upload {
    image: Vec<u8>,
    /// A painting to take the style from (the multipart part `style_image`).
    style_image: Option<Vec<u8>>,
    params: StylizeParams,
}

/// A request's style: styles of a loaded network, or a painting's bytes.
enum StyleChoice {
    Mix(Selection),
    Picture(Vec<u8>),
}

/// How the style picture's errors name it.
const STYLE_PICTURE: &str = "the style picture (`style_image`)";

async fn stylize(State(state): Shared, request: Request) -> Result<Response> {
    let params = read_head(&state, &request)?;
    // A place in the queue also bounds the bodies held in memory at once, so it is taken
    // before the body is read (a client that waits for `100 Continue` sends none when refused).
    let permit = admit(&state)?;
    let work = async {
        let upload = read_upload(&state, request, params).await?;
        let limits = &state.limits;
        let input_format = codec::check_header(&upload.image, limits.max_pixels)?;
        let params = upload.params;
        let choice = match upload.style_image {
            Some(picture) => {
                if params.style.is_some() {
                    return Err(Error::BadRequest(
                        "`style` and `style_image` both choose the style; send one of them".into(),
                    ));
                }
                codec::check_header(&picture, limits.max_pixels)
                    .map_err(|e| e.about(STYLE_PICTURE))?;
                StyleChoice::Picture(picture)
            }
            None => StyleChoice::Mix(state.catalogue.select(params.style.as_deref())?),
        };
        let max_size = params
            .max_size
            .unwrap_or(limits.default_size.min(limits.max_side));
        let format = params
            .format
            .unwrap_or_else(|| codec::output_format_of(input_format));
        let finish = Finish {
            strength: params.strength,
            preserve_color: params.preserve_color,
        };
        let label = match &choice {
            StyleChoice::Mix(selection) => selection.label.clone(),
            StyleChoice::Picture(_) => PICTURE_LABEL.to_string(),
        };
        let bytes = upload.image;
        let side = state.style_picture_side;
        let incoming = state.queue.incoming();
        let (image, style) = on_codec_thread(&state, move || {
            let photo = codec::decode_fitted(&bytes, max_size)?;
            let style = match choice {
                StyleChoice::Mix(selection) => JobStyle::Mix(selection),
                StyleChoice::Picture(picture) => {
                    let picture =
                        codec::decode_image(&picture).map_err(|e| e.about(STYLE_PICTURE))?;
                    let prepared = StylePicture::prepare(&picture, &photo, finish.strength, side);
                    JobStyle::Picture(prepared)
                }
            };
            Ok((models::pixels::image_to_tensor(&photo), style))
        })
        .await?;
        let (stylized, batch) =
            run_network(&state, Some(permit), style, image, finish, Some(incoming)).await?;
        let quality = params.quality;
        let encoded =
            on_codec_thread(&state, move || codec::encode(&stylized, format, quality)).await?;
        Ok::<_, Error>((encoded, batch, label, format))
    };
    let (encoded, batch, label, format) = tokio::time::timeout(state.timeout, work)
        .await
        .map_err(|_| {
            Error::Busy(format!(
                "the request took longer than the server's {} s timeout; retry later",
                state.timeout.as_secs_f64()
            ))
        })??;
    let file_name = format!(
        "stylized-{}.{}",
        label.replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
        format.extension()
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(codec::content_type(format)),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("inline; filename=\"{file_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&label) {
        headers.insert("x-atelier-style", value);
    }
    headers.insert("x-atelier-batch", HeaderValue::from(batch));
    Ok((headers, encoded).into_response())
}

/// The query string's parameters, and the declared body length checked against the limit:
/// what can be refused before the body is read.
fn read_head(state: &Arc<AppState>, request: &Request) -> Result<StylizeParams> {
    let limits = &state.limits;
    let mut params = StylizeParams::default();
    let query: Query<Vec<(String, String)>> = Query::try_from_uri(request.uri())
        .map_err(|e| Error::BadRequest(format!("cannot read the query string: {e}")))?;
    for (name, value) in &query.0 {
        params.set(name, value, limits.max_side)?;
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body as u64) {
        return Err(too_large(limits));
    }
    Ok(params)
}

/// The image and parameters of a stylize request: the raw body with parameters in the query
/// string, or a multipart form with an `image` part (parameters as query or form fields).
async fn read_upload(
    state: &Arc<AppState>,
    request: Request,
    mut params: StylizeParams,
) -> Result<Upload> {
    let limits = &state.limits;
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        let image = axum::body::to_bytes(request.into_body(), limits.max_body)
            .await
            .map_err(|_| too_large(limits))?;
        return Ok(Upload {
            image: image.to_vec(),
            style_image: None,
            params,
        });
    }
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| Error::BadRequest(format!("cannot read the multipart body: {e}")))?;
    let mut image = None;
    let mut style_image = None;
    let mut parts = 0;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        parts += 1;
        if parts > limits.max_parts {
            return Err(Error::BadRequest(format!(
                "the form has more than {} parts",
                limits.max_parts
            )));
        }
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "image" => {
                if image.is_some() {
                    return Err(Error::BadRequest("the form has two `image` parts".into()));
                }
                image = Some(field.bytes().await.map_err(multipart_error)?.to_vec());
            }
            "style_image" => {
                if style_image.is_some() {
                    return Err(Error::BadRequest(
                        "the form has two `style_image` parts".into(),
                    ));
                }
                let bytes = field.bytes().await.map_err(multipart_error)?;
                if bytes.is_empty() {
                    return Err(Error::BadRequest(
                        "the `style_image` part is empty: send a painting's image file".into(),
                    ));
                }
                style_image = Some(bytes.to_vec());
            }
            _ => {
                let value = field.text().await.map_err(multipart_error)?;
                params.set(&name, &value, limits.max_side)?;
            }
        }
    }
    let image = image
        .ok_or_else(|| Error::BadRequest("the form has no `image` part with the photo".into()))?;
    Ok(Upload {
        image,
        style_image,
        params,
    })
}

fn too_large(limits: &Limits) -> Error {
    Error::TooLarge(format!(
        "the body is larger than the server's {} MiB limit",
        limits.max_body as f64 / (1 << 20) as f64
    ))
}

fn multipart_error(err: axum::extract::multipart::MultipartError) -> Error {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::TooLarge(format!("the form is too large: {}", err.body_text()))
    } else {
        Error::BadRequest(format!(
            "cannot read the multipart body: {}",
            err.body_text()
        ))
    }
}
