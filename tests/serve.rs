//! `atelier serve` end to end: the real binary on an ephemeral loopback port, driven by an HTTP
//! client. Every endpoint; 32 concurrent requests; bad input of every kind; the token; graceful
//! shutdown; and the page in headless Chromium (`tests/browser/page.py`).

mod infer_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use infer_support::*;

/// A running `atelier serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(args: &[&str], token: Option<&str>) -> Self {
        let mut command = atelier();
        command
            .args(["serve", "--bind", "127.0.0.1:0", "--device", "cpu"])
            .args(args)
            .env_remove("ATELIER_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(token) = token {
            command.env("ATELIER_TOKEN", token);
        }
        let mut child = command.spawn().expect("atelier serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reads the address line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("no address printed, got {line:?}"))
            .to_string();
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        Self { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn port_addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Reply {
    status: u16,
    content_type: String,
    retry_after: Option<String>,
    batch: Option<usize>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        assert_eq!(
            self.content_type, "application/json",
            "status {}",
            self.status
        );
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// A JSON error with this status.
    fn assert_error(&self, status: u16, contains: &str) {
        let body = self.json();
        let message = body["error"].as_str().expect("an `error` string");
        assert_eq!(self.status, status, "{message}");
        assert!(message.contains(contains), "`{message}` lacks `{contains}`");
    }

    fn image(&self) -> image::RgbImage {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        image::load_from_memory(&self.body)
            .expect("the answer decodes")
            .to_rgb8()
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build()
}

fn finish(result: Result<ureq::Response, ureq::Error>) -> Reply {
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(err) => panic!("transport error: {err}"),
    };
    let status = response.status();
    let content_type = response.content_type().to_string();
    let retry_after = response.header("retry-after").map(str::to_string);
    let batch = response
        .header("x-atelier-batch")
        .and_then(|v| v.parse().ok());
    let mut body = Vec::new();
    response
        .into_reader()
        .take(64 << 20)
        .read_to_end(&mut body)
        .expect("reads the body");
    Reply {
        status,
        content_type,
        retry_after,
        batch,
        body,
    }
}

fn get(server: &Server, path: &str) -> Reply {
    finish(agent().get(&server.url(path)).call())
}

fn post(server: &Server, path: &str, body: &[u8]) -> Reply {
    finish(agent().post(&server.url(path)).send_bytes(body))
}

/// A multipart/form-data body of `(name, filename, bytes)` parts.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "atelier-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, filename, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(file) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn post_form(server: &Server, path: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Reply {
    let (content_type, body) = multipart(parts);
    finish(
        agent()
            .post(&server.url(path))
            .set("Content-Type", &content_type)
            .send_bytes(&body),
    )
}

fn photo() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/photos/chelsea.png");
    std::fs::read(path).expect("the bundled photo")
}

/// A small PNG of a smooth gradient.
fn small_png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 120])
    });
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes
}

/// Mean absolute difference per channel between two same-size images.
fn mean_difference(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (x as i64 - y as i64).unsigned_abs())
        .sum();
    total as f64 / a.as_raw().len() as f64
}

fn resized_photo(width: u32, height: u32) -> image::RgbImage {
    let original = image::load_from_memory(&photo()).unwrap();
    original
        .resize_exact(width, height, image::imageops::FilterType::CatmullRom)
        .to_rgb8()
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{line_start}` in the metrics:\n{text}"))
}

#[test]
fn every_endpoint_answers() {
    let dir = tempfile::tempdir().unwrap();
    random_multistyle(dir.path());
    std::fs::write(dir.path().join("broken.safetensors"), b"not a model").unwrap();
    let models = dir.path().to_str().unwrap();
    let server = Server::start(&["--models", models], None);

    let health = get(&server, "/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(health.json()["styles"], 28);

    let listing = get(&server, "/v1/styles").json();
    let styles = listing["styles"].as_array().unwrap();
    assert_eq!(
        styles.len(),
        26 + 2,
        "built-in styles and the two of the model file"
    );
    assert_eq!(styles[19]["id"], "19");
    assert_eq!(styles[19]["kind"], "builtin");
    assert_eq!(styles[26]["id"], "multistyle/ink");
    assert_eq!(styles[26]["kind"], "model");
    assert_eq!(listing["default"], "19");
    assert_eq!(listing["style_images"], true);

    let thumbnail_url = styles[3]["thumbnail"].as_str().unwrap();
    let thumbnail = get(&server, thumbnail_url);
    assert_eq!(thumbnail.content_type, "image/jpeg");
    assert_eq!(thumbnail.image().dimensions(), (160, 106));
    get(&server, "/v1/thumbnails/28").assert_error(404, "no thumbnail");

    let page = get(&server, "/");
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    let html = String::from_utf8(page.body).unwrap();
    assert!(html.contains("/app.js") && html.contains("id=\"styles\""));
    for asset in ["/app.js", "/app.css", "/sample.png"] {
        assert_eq!(get(&server, asset).status, 200, "{asset}");
    }

    // The raw body, parameters in the query string.
    let reply = post(
        &server,
        "/v1/stylize?style=7&max_size=128&format=png",
        &photo(),
    );
    assert_eq!(reply.content_type, "image/png");
    let styled = reply.image();
    assert_eq!(styled.dimensions(), (128, 85));
    let original = resized_photo(128, 85);
    assert!(
        mean_difference(&styled, &original) > 20.0,
        "the network changed it"
    );

    // Multipart, with strength and colour preservation; a style of the model file.
    let half = post_form(
        &server,
        "/v1/stylize",
        &[
            ("image", Some("cat.png"), &photo()),
            ("style", None, b"7"),
            ("strength", None, b"0.5"),
            ("max_size", None, b"128"),
            ("format", None, b"png"),
        ],
    )
    .image();
    let to_original = mean_difference(&half, &original);
    let to_styled = mean_difference(&half, &styled);
    assert!(
        (to_original - to_styled).abs() < 0.25 * (to_original + to_styled),
        "strength 0.5 sits between the two: {to_original} {to_styled}"
    );
    let ink = post(
        &server,
        "/v1/stylize?style=multistyle/ink&max_size=64",
        &photo(),
    );
    assert_eq!(
        ink.content_type, "image/png",
        "the input's format by default"
    );
    assert_eq!(ink.image().dimensions(), (64, 43));
    let jpeg = post(
        &server,
        "/v1/stylize?max_size=64&format=jpeg&preserve_color=true",
        &photo(),
    );
    assert_eq!(jpeg.content_type, "image/jpeg");
    assert_eq!(jpeg.image().dimensions(), (64, 43));

    let metrics = String::from_utf8(get(&server, "/metrics").body).unwrap();
    assert!(
        metric(
            &metrics,
            "atelier_requests_total{route=\"/v1/stylize\",status=\"200\"}"
        ) >= 4.0
    );
    assert!(metric(&metrics, "atelier_images_total") >= 4.0);
    assert!(metrics
        .contains("atelier_request_duration_seconds_bucket{route=\"/v1/stylize\",le=\"+Inf\"}"));
    assert!(metrics.contains("atelier_batch_size_bucket{le=\"1\"}"));
    // At most the start-up thumbnail warm-up's one image is still queued.
    assert!(metric(&metrics, "atelier_queue_depth") <= 1.0);
    assert!(metrics.contains("atelier_images_per_second "));

    get(&server, "/nowhere").assert_error(404, "no such page");
}

fn asset(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets")
            .join(path),
    )
    .unwrap_or_else(|e| panic!("the bundled {path}: {e}"))
}

/// Mean absolute difference of the chroma (R − G and B − G) of two same-size images.
fn chroma_difference(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    let chroma = |p: &image::Rgb<u8>| {
        let [r, g, b] = p.0.map(i32::from);
        (r - g, b - g)
    };
    let total: i64 = a
        .pixels()
        .zip(b.pixels())
        .map(|(x, y)| {
            let ((xr, xb), (yr, yb)) = (chroma(x), chroma(y));
            i64::from((xr - yr).abs() + (xb - yb).abs())
        })
        .sum();
    total as f64 / (2 * a.pixels().len()) as f64
}

#[test]
fn a_style_picture_is_a_style() {
    let server = Server::start(&[], None);
    let photo = photo();
    let stylize = |painting: &[u8], fields: &[(&str, &[u8])]| {
        let mut parts = vec![
            ("image", Some("cat.png"), &photo[..]),
            ("style_image", Some("painting.png"), painting),
            ("max_size", None, b"128" as &[u8]),
            ("format", None, b"png"),
        ];
        parts.extend(fields.iter().map(|&(name, value)| (name, None, value)));
        post_form(&server, "/v1/stylize", &parts)
    };
    let swirls_picture = asset("styles/swirls.png");
    let swirls = stylize(&swirls_picture, &[]).image();
    assert_eq!(swirls.dimensions(), (128, 85));
    let original = resized_photo(128, 85);
    assert!(
        mean_difference(&swirls, &original) > 20.0,
        "the painting's style changed the photo"
    );
    let brick = stylize(&asset("styles/brick.png"), &[]).image();
    assert!(
        mean_difference(&swirls, &brick) > 10.0,
        "two paintings give two styles"
    );
    // Strength moves the painting's style vector towards the photo's own.
    let half = stylize(&swirls_picture, &[("strength", b"0.5")]).image();
    assert!(
        mean_difference(&half, &swirls) > 5.0,
        "strength 0.5 changes it"
    );
    assert!(
        mean_difference(&half, &original) < mean_difference(&swirls, &original),
        "strength 0.5 is nearer the photo"
    );
    let kept = stylize(&swirls_picture, &[("preserve_color", b"true")]).image();
    assert!(
        chroma_difference(&kept, &original) < 0.5 * chroma_difference(&swirls, &original),
        "preserve_color keeps the photo's colours"
    );

    let bomb = png_declaring(50_000, 50_000);
    for (painting, status, message) in [
        (
            &b"\x00\x01 garbage, not a painting"[..],
            415,
            "style picture",
        ),
        (
            &swirls_picture[..swirls_picture.len() / 3],
            400,
            "style picture",
        ),
        (&bomb[..], 413, "50000x50000"),
        (b"", 400, "`style_image` part is empty"),
    ] {
        stylize(painting, &[]).assert_error(status, message);
    }
    stylize(&swirls_picture, &[("style", b"7")]).assert_error(400, "send one of them");
    assert_eq!(get(&server, "/healthz").status, 200);
}

#[test]
fn thirty_two_concurrent_requests_are_all_answered() {
    // Eight places and a long batching window: some requests are refused, and the admitted
    // ones share network calls.
    let server = Arc::new(Server::start(
        &["--queue", "8", "--batch", "4", "--batch-window", "100"],
        None,
    ));
    let image = Arc::new(small_png(48, 32));
    let barrier = Arc::new(Barrier::new(32));
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let (server, image, barrier) = (server.clone(), image.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                post(&server, "/v1/stylize?style=5&format=png", &image)
            })
        })
        .collect();
    let replies: Vec<Reply> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    let busy: Vec<&Reply> = replies.iter().filter(|r| r.status == 503).collect();
    assert_eq!(ok.len() + busy.len(), 32, "every answer is 200 or 503");
    assert!(
        ok.len() >= 8,
        "at least the first queue-full are served: {}",
        ok.len()
    );
    for reply in &ok {
        assert_eq!(reply.image().dimensions(), (48, 32));
    }
    for reply in &busy {
        assert_eq!(reply.retry_after.as_deref(), Some("1"));
        reply.assert_error(503, "busy");
    }
    let largest_batch = ok.iter().filter_map(|r| r.batch).max().unwrap_or(0);
    assert!(
        largest_batch > 1,
        "requests within the window share a network call"
    );
    // Still healthy and serving.
    assert_eq!(get(&server, "/healthz").status, 200);
    let after = post(&server, "/v1/stylize?style=5", &image);
    assert_eq!(after.image().dimensions(), (48, 32));
    let metrics = String::from_utf8(get(&server, "/metrics").body).unwrap();
    assert_eq!(
        metric(
            &metrics,
            "atelier_requests_total{route=\"/v1/stylize\",status=\"200\"}"
        ),
        ok.len() as f64 + 1.0
    );
    assert!(metric(&metrics, "atelier_queue_depth") <= 1.0);
}

#[test]
fn two_cpu_workers_answer_concurrent_requests_as_one_does() {
    // One intra-op thread per worker in both servers and no batching: each answer is a
    // deterministic function of its request, whichever worker ran it.
    let single = Server::start(&["--workers", "1", "--threads", "1", "--batch", "1"], None);
    let pair = Arc::new(Server::start(
        &["--workers", "2", "--threads", "2", "--batch", "1"],
        None,
    ));
    let photo = Arc::new(photo());
    let paths: Vec<String> = (0..8)
        .map(|style| format!("/v1/stylize?style={}&format=png&max_size=96", style * 3))
        .collect();
    let expected: Vec<Vec<u8>> = paths
        .iter()
        .map(|path| {
            let reply = post(&single, path, &photo);
            assert_eq!(reply.image().width(), 96);
            reply.body
        })
        .collect();
    assert_ne!(expected[0], expected[1], "the styles differ");
    let barrier = Arc::new(Barrier::new(paths.len()));
    let threads: Vec<_> = paths
        .iter()
        .cloned()
        .map(|path| {
            let (server, photo, barrier) = (pair.clone(), photo.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                post(&server, &path, &photo)
            })
        })
        .collect();
    for ((thread, expected), path) in threads.into_iter().zip(&expected).zip(&paths) {
        let reply = thread.join().unwrap();
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.batch, Some(1));
        assert!(
            &reply.body == expected,
            "{path}: not the bytes one worker gives"
        );
    }
    let metrics = String::from_utf8(get(&pair, "/metrics").body).unwrap();
    assert_eq!(
        metric(
            &metrics,
            "atelier_requests_total{route=\"/v1/stylize\",status=\"200\"}"
        ),
        paths.len() as f64
    );
}

/// A small valid PNG file (8x8 pixels of data) whose header declares `width`x`height`.
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = small_png(8, 8);
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Sends a request head declaring a `length`-byte body and only a few bytes of it, and reads
/// the status line the server answers with.
fn status_for_declared_length(server: &Server, length: usize) -> (u16, String) {
    let mut stream = TcpStream::connect(server.port_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /v1/stylize HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n\
         Content-Length: {length}\r\n\r\nPNG"
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

#[test]
fn bad_input_gets_its_4xx_and_the_server_keeps_serving() {
    let server = Server::start(&["--max-body", "1", "--max-pixels", "40"], None);
    post(
        &server,
        "/v1/stylize",
        b"\x00\x01garbage bytes, not an image\xff",
    )
    .assert_error(415, "not an image");
    let photo = photo();
    post(&server, "/v1/stylize", &photo[..photo.len() / 3]).assert_error(400, "cannot decode");
    post(&server, "/v1/stylize", &png_declaring(50_000, 50_000)).assert_error(413, "50000x50000");
    post(&server, "/v1/stylize", b"").assert_error(400, "no image");
    let (status, answer) = status_for_declared_length(&server, 2 << 20);
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("\"error\""), "{answer}");
    // A body past the limit without a declared length (chunked) is cut off too.
    let big = vec![7u8; (1 << 20) + 4096];
    let chunked = finish(
        agent()
            .post(&server.url("/v1/stylize"))
            .send(std::io::Cursor::new(big)),
    );
    chunked.assert_error(413, "limit");

    for (query, message) in [
        ("strength=1.5", "strength must be between 0 and 1"),
        ("strength=abc", "not a number"),
        ("style=99", "no style `99`"),
        ("style=../../etc/passwd", "no style"),
        ("max_size=4", "max_size must be between 16 and 2048"),
        ("max_size=99999", "max_size must be between"),
        ("format=gif", "use png, jpeg"),
        ("quality=101", "quality must be between 1 and 100"),
        ("preserve_color=maybe", "true or false"),
        ("path=/tmp/x.png", "unknown parameter `path`"),
    ] {
        post(&server, &format!("/v1/stylize?{query}"), &small_png(16, 16))
            .assert_error(400, message);
    }
    let image = small_png(24, 16);
    post_form(&server, "/v1/stylize", &[("style", None, b"3")]).assert_error(400, "no `image`");
    let many: Vec<(&str, Option<&str>, &[u8])> =
        (0..9).map(|_| ("style", None, b"3" as &[u8])).collect();
    post_form(&server, "/v1/stylize", &many).assert_error(400, "more than 8 parts");
    get(&server, "/v1/stylize").assert_error(405, "method not allowed");

    assert_eq!(get(&server, "/healthz").status, 200);
    let reply = post_form(&server, "/v1/stylize", &[("image", Some("a.png"), &image)]);
    assert_eq!(reply.image().dimensions(), (24, 16));
}

#[test]
fn a_token_is_required_when_set() {
    let server = Server::start(&[], Some("s3cret-token"));
    get(&server, "/v1/styles").assert_error(401, "Bearer");
    let wrong = finish(
        agent()
            .get(&server.url("/v1/styles"))
            .set("Authorization", "Bearer wrong")
            .call(),
    );
    wrong.assert_error(401, "Bearer");
    post(&server, "/v1/stylize", &small_png(16, 16)).assert_error(401, "Bearer");
    get(&server, "/metrics").assert_error(401, "Bearer");
    let right = finish(
        agent()
            .get(&server.url("/v1/styles"))
            .set("Authorization", "Bearer s3cret-token")
            .call(),
    );
    assert_eq!(right.status, 200);
    // The page and the health check stay open; the page asks for the token.
    assert_eq!(get(&server, "/healthz").status, 200);
    assert_eq!(get(&server, "/").status, 200);
}

#[test]
fn sigterm_finishes_the_request_in_flight() {
    let mut server = Server::start(&[], None);
    let url = server.url("/v1/stylize?max_size=1024&format=png");
    let astronaut =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/photos/astronaut.png"))
            .unwrap();
    let request = std::thread::spawn(move || finish(agent().post(&url).send_bytes(&astronaut)));
    // Wait until the request is admitted, then ask the server to stop.
    let started = Instant::now();
    loop {
        let metrics = String::from_utf8(get(&server, "/metrics").body).unwrap();
        if metric(&metrics, "atelier_requests_in_flight") >= 1.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never admitted"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = server.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let reply = request.join().unwrap();
    assert_eq!(reply.image().dimensions(), (512, 512));
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        TcpStream::connect(server.port_addr()).is_err(),
        "no longer listening"
    );
}

/// The page in headless Chromium: upload the bundled photo, pick a style, wait for the result,
/// check its pixels, save a screenshot under `target/`.
#[test]
fn the_page_stylizes_a_photo_in_chromium() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| which(name))
    else {
        eprintln!(
            "SKIPPED the_page_stylizes_a_photo_in_chromium: no chromium here and it cannot be \
             installed (scripts/setup.sh installs Debian's chromium and chromium-driver as root)"
        );
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    let server = Server::start(&[], None);
    let artifacts = root.join("target/serve-page");
    std::fs::create_dir_all(&artifacts).unwrap();
    let output = std::process::Command::new(python)
        .arg(root.join("tests/browser/page.py"))
        .args(["--url", &server.base])
        .args(["--browser", chromium])
        .arg("--photo")
        .arg(root.join("assets/photos/chelsea.png"))
        .arg("--painting")
        .arg(root.join("assets/styles/swirls.png"))
        .arg("--out")
        .arg(&artifacts)
        .output()
        .expect("the venv python runs (scripts/setup.sh test installs selenium)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap())
        .expect("page.py prints a JSON report last");
    assert_eq!(report["result_size"], report["expected_size"], "{report}");
    assert!(
        report["mean_difference"].as_f64().unwrap() > 10.0,
        "{report}"
    );
    assert_eq!(
        report["painting_result_size"], report["expected_size"],
        "{report}"
    );
    assert!(
        report["painting_difference_to_style"].as_f64().unwrap() > 10.0,
        "{report}"
    );
    for shot in ["desktop.png", "phone.png"] {
        let bytes = std::fs::read(artifacts.join(shot)).unwrap();
        let image = image::load_from_memory(&bytes).unwrap();
        assert!(image.width() > 300, "{shot} is a real screenshot");
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
