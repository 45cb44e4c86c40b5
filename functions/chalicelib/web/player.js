// fsnode player: plays a share URL. The control plane redirects it once to an edge,
// which serves the bytes over HTTPS with Range, so seeking fetches only what it needs.
"use strict";

const video = document.getElementById("video");
const status = document.getElementById("status");
const field = document.getElementById("src");

function play(src) {
  let url;
  try { url = new URL(src, location.href); } catch (_) { status.textContent = "not a URL"; return; }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    status.textContent = "only http(s) share URLs play here";
    return;
  }
  field.value = url.href;
  video.src = url.href;
  status.textContent = "loading";
}

video.addEventListener("loadedmetadata", () => {
  status.textContent = `ready: ${video.duration.toFixed(1)} s from ${new URL(video.currentSrc).host}`;
});
video.addEventListener("error", () => {
  const err = video.error;
  status.textContent = `cannot play: ${err ? err.message || `media error ${err.code}` : "unknown"}`;
});
document.getElementById("src-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const next = new URL(location.href);
  next.searchParams.set("src", field.value);
  history.replaceState(null, "", next);
  play(field.value);
});

const initial = new URLSearchParams(location.search).get("src");
if (initial) play(initial);
