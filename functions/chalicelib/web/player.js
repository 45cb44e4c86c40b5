// fsnode player: plays a share URL. The control plane redirects it once to an edge,
// which serves the bytes over HTTPS with Range, so seeking fetches only what it needs.
// An HLS playlist (a folder share's URL ending in .m3u8, or ?type=hls) plays natively
// where the browser plays HLS, else with hls.js (Media Source Extensions), which the
// control plane serves at the version pinned in web/package-lock.json; ?engine=hls.js
// picks hls.js even where the browser has native HLS. Anything else goes to <video> as is.
"use strict";

const video = document.getElementById("video");
const status = document.getElementById("status");
const field = document.getElementById("src");
const HLS_TYPE = "application/vnd.apple.mpegurl";
let hls = null;

function say(text) { status.textContent = text; }

function isHls(url, params) {
  return params.get("type") === "hls" || url.pathname.toLowerCase().endsWith(".m3u8");
}

// Which engine plays an HLS URL: "native", "hls.js", or null (neither is available).
function hlsEngine(params) {
  const hlsJs = typeof Hls !== "undefined" && Hls.isSupported();
  if (params.get("engine") === "hls.js" && hlsJs) return "hls.js";
  if (video.canPlayType(HLS_TYPE)) return "native";
  return hlsJs ? "hls.js" : null;
}

function playWithHlsJs(href) {
  hls = new Hls();
  hls.on(Hls.Events.ERROR, (_event, data) => {
    if (data.fatal) say(`cannot play: ${data.type} ${data.details}`);
  });
  hls.on(Hls.Events.MANIFEST_PARSED, (_event, data) => {
    say(`HLS with hls.js ${Hls.version}: ${data.levels.length} rendition(s)`);
  });
  hls.loadSource(href);
  hls.attachMedia(video);
}

function play(src, params) {
  let url;
  try { url = new URL(src, location.href); } catch (_) { say("not a URL"); return; }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    say("only http(s) share URLs play here");
    return;
  }
  field.value = url.href;
  if (hls) { hls.destroy(); hls = null; }
  video.removeAttribute("src");
  const engine = isHls(url, params) ? hlsEngine(params) : "native";
  video.dataset.engine = engine || "";
  if (engine === null) {
    say("this browser plays neither HLS nor Media Source Extensions");
    return;
  }
  say("loading");
  if (engine === "hls.js") playWithHlsJs(url.href);
  else video.src = url.href;
}

video.addEventListener("loadedmetadata", () => {
  const from = hls ? "hls.js" : new URL(video.currentSrc).host;
  say(`ready: ${Number.isFinite(video.duration) ? `${video.duration.toFixed(1)} s` : "live"} (${from})`);
});
video.addEventListener("error", () => {
  const err = video.error;
  say(`cannot play: ${err ? err.message || `media error ${err.code}` : "unknown"}`);
});
document.getElementById("src-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const next = new URL(location.href);
  next.searchParams.set("src", field.value);
  history.replaceState(null, "", next);
  play(field.value, next.searchParams);
});

const params = new URLSearchParams(location.search);
if (params.get("src")) play(params.get("src"), params);
