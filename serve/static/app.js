// The Atelier page: pick a photo, click a style, see the result beside the original.
// Plain browser JavaScript talking to the server's own API (/v1/styles, /v1/stylize).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  token: localStorage.getItem("atelier-token") || "",
  styles: [],
  style: null,
  painting: null,     // a painting chosen as the style (a Blob); when set, it replaces `style`
  photo: null,        // the chosen photo as a Blob
  photoName: "photo",
  request: null,      // AbortController of the stylize request in flight
  resultUrl: null,
  previewRun: 0,      // bumped for each photo, so old thumbnail previews stop
};

function authHeaders() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error || response.statusText;
  } catch (_) {
    return response.status + " " + response.statusText;
  }
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (response.status === 401) {
    $("token-form").hidden = false;
    throw new Error("this server needs an access token");
  }
  return response;
}

async function loadStyles() {
  const response = await api("/v1/styles");
  if (!response.ok) throw new Error(await errorText(response));
  const listing = await response.json();
  state.styles = listing.styles;
  state.style = listing.default;
  $("style-image-control").hidden = !listing.style_images;
  const grid = $("styles");
  grid.replaceChildren();
  for (const style of listing.styles) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "style";
    button.dataset.id = style.id;
    button.setAttribute("role", "option");
    button.setAttribute("aria-selected", String(style.id === state.style));
    button.title = style.kind === "builtin" ? "Built-in style " + style.id : style.model + ": " + style.name;
    const image = document.createElement("img");
    image.alt = "Style " + style.id;
    image.loading = "lazy";
    const label = document.createElement("span");
    label.textContent = style.kind === "builtin" ? "Style " + style.id : style.name;
    button.append(image, label);
    button.addEventListener("click", () => pickStyle(style.id));
    grid.append(button);
    loadThumbnail(style.thumbnail, image);
  }
}

async function loadThumbnail(url, image) {
  try {
    const response = await api(url);
    if (response.ok) image.src = URL.createObjectURL(await response.blob());
  } catch (_) {
    // A missing thumbnail leaves the grey tile; the style still works.
  }
}

function markSelected() {
  for (const button of $("styles").children) {
    const selected = !state.painting && button.dataset.id === state.style;
    button.setAttribute("aria-selected", String(selected));
  }
  $("painting").hidden = !state.painting;
}

function pickStyle(id) {
  state.style = id;
  state.painting = null;
  $("style-file").value = "";
  markSelected();
  stylize();
}

// A painting of one's own as the style: the server's arbitrary-style network takes its
// style from the picture. Clicking a style in the grid goes back to that style.
function usePainting(blob) {
  if (!blob.type.startsWith("image/") && blob.type !== "") {
    setStatus("That file is not an image", true);
    return;
  }
  state.painting = blob;
  const preview = $("painting");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(blob);
  markSelected();
  if (state.photo) stylize();
  else setStatus("Now pick a photo to put in the painting's style");
}

function styleName() {
  return state.painting ? "Your painting" : "Style " + state.style;
}

function usePhoto(blob, name) {
  if (!blob.type.startsWith("image/") && blob.type !== "") {
    setStatus("That file is not an image", true);
    return;
  }
  state.photo = blob;
  state.photoName = (name || "photo").replace(/\.[^.]*$/, "");
  const original = $("original");
  if (original.src) URL.revokeObjectURL(original.src);
  original.src = URL.createObjectURL(blob);
  original.hidden = false;
  $("drop-hint").hidden = true;
  stylize().then(() => previewStylesOnPhoto());
}

function options(form, maxSize) {
  if (state.painting) form.append("style_image", state.painting, "painting");
  else form.append("style", state.style);
  form.append("strength", $("strength").value);
  form.append("preserve_color", $("preserve").checked ? "true" : "false");
  form.append("max_size", String(maxSize));
  form.append("format", "jpeg");
  form.append("quality", "92");
}

async function stylize(attempt = 0) {
  if (!state.photo) {
    setStatus("Pick a photo first: drop one above, choose a file, or use the sample photo");
    return;
  }
  if (state.request) state.request.abort();
  const controller = new AbortController();
  state.request = controller;
  const form = new FormData();
  form.append("image", state.photo, "photo");
  options(form, Number($("size").value));
  $("spinner").hidden = false;
  $("result-box").dataset.state = "working";
  setStatus("Stylizing…");
  const started = performance.now();
  try {
    const response = await api("/v1/stylize", { method: "POST", body: form, signal: controller.signal });
    if (response.status === 503 && attempt < 5) {
      const wait = Number(response.headers.get("Retry-After") || "1");
      setStatus("The server is busy; retrying in " + wait + " s…");
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
      if (state.request === controller) return stylize(attempt + 1);
      return;
    }
    if (!response.ok) throw new Error(await errorText(response));
    const blob = await response.blob();
    if (state.request !== controller) return;
    showResult(blob, performance.now() - started);
  } catch (error) {
    if (error.name === "AbortError") return;
    $("result-box").dataset.state = "error";
    setStatus(error.message, true);
  } finally {
    if (state.request === controller) {
      state.request = null;
      $("spinner").hidden = true;
    }
  }
}

function showResult(blob, milliseconds) {
  if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
  state.resultUrl = URL.createObjectURL(blob);
  const result = $("result");
  result.onload = () => { $("result-box").dataset.state = "done"; };
  result.src = state.resultUrl;
  result.hidden = false;
  $("result-hint").hidden = true;
  const download = $("download");
  download.href = state.resultUrl;
  const suffix = state.painting ? "painting" : "style-" + state.style.replace(/[^A-Za-z0-9]+/g, "-");
  download.download = state.photoName + "-" + suffix + ".jpg";
  download.hidden = false;
  $("result-label").textContent = styleName();
  setStatus("Done in " + (milliseconds / 1000).toFixed(2) + " s");
}

// Renders each style's thumbnail on the chosen photo, one small request at a time, so the
// grid shows what every style does to this photo without crowding out the main result.
async function previewStylesOnPhoto() {
  const run = ++state.previewRun;
  for (const button of $("styles").children) {
    if (run !== state.previewRun || !state.photo) return;
    const form = new FormData();
    form.append("image", state.photo, "photo");
    form.append("style", button.dataset.id);
    form.append("max_size", "160");
    form.append("format", "jpeg");
    form.append("quality", "85");
    try {
      const response = await api("/v1/stylize", { method: "POST", body: form });
      if (!response.ok) continue;
      const image = button.querySelector("img");
      const blob = await response.blob();
      if (run !== state.previewRun) return;
      if (image.src.startsWith("blob:")) URL.revokeObjectURL(image.src);
      image.src = URL.createObjectURL(blob);
    } catch (_) {
      return;
    }
  }
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function wire() {
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) usePhoto(file, file.name);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) usePhoto(file, file.name);
  });
  $("sample").addEventListener("click", async () => {
    const response = await fetch("/sample.png");
    usePhoto(await response.blob(), "sample.png");
  });
  const restyle = debounce(() => stylize(), 250);
  $("strength").addEventListener("input", () => {
    $("strength-value").textContent = Math.round($("strength").value * 100) + "%";
    restyle();
  });
  $("preserve").addEventListener("change", () => stylize());
  $("size").addEventListener("change", () => stylize());
  $("style-file").addEventListener("change", (event) => {
    const picture = event.target.files[0];
    if (picture) usePainting(picture);
  });
  $("token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    state.token = $("token").value.trim();
    localStorage.setItem("atelier-token", state.token);
    $("token-form").hidden = true;
    start();
  });
}

async function start() {
  try {
    await loadStyles();
    setStatus("Pick a photo to begin");
  } catch (error) {
    setStatus(error.message, true);
  }
}

wire();
start();
