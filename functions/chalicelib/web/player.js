// fsnode player: plays a share URL. The control plane redirects it once to an edge,
// which serves the bytes over HTTPS with Range, so seeking fetches only what it needs.
// An HLS playlist (a folder share's URL ending in .m3u8, or ?type=hls) plays natively
// where the browser plays HLS, else with hls.js (Media Source Extensions), which the
// control plane serves at the version pinned in web/package-lock.json; ?engine=hls.js
// picks hls.js even where the browser has native HLS. A DASH manifest (.mpd, or
// ?type=dash) plays with dash.js, pinned the same way (no browser plays DASH natively).
// Anything else goes to <video> as is.
"use strict";

const video = document.getElementById("video");
const status = document.getElementById("status");
const field = document.getElementById("src");
const HLS_TYPE = "application/vnd.apple.mpegurl";
let hls = null;
let dash = null;

function say(text) { status.textContent = text; }

function isHls(url, params) {
  return params.get("type") === "hls" || url.pathname.toLowerCase().endsWith(".m3u8");
}

function isDash(url, params) {
  return params.get("type") === "dash" || url.pathname.toLowerCase().endsWith(".mpd");
}

// dash.js needs Media Source Extensions.
function dashEngine() {
  if (typeof dashjs === "undefined") return null;
  const mse = typeof dashjs.supportsMediaSource === "function"
    ? dashjs.supportsMediaSource() : "MediaSource" in window;
  return mse ? "dash.js" : null;
}

function playWithDashJs(href) {
  dash = dashjs.MediaPlayer().create();
  const events = dashjs.MediaPlayer.events;
  dash.on(events.ERROR, (e) => {
    const error = e && e.error;
    say(`cannot play: ${error ? error.message || `dash.js error ${error.code}` : "dash.js error"}`);
  });
  dash.on(events.STREAM_INITIALIZED, () => {
    const tracks = dash.getTracksFor ? dash.getTracksFor("video").length : 0;
    say(`DASH with dash.js ${dash.getVersion()}${tracks ? `: ${tracks} video track(s)` : ""}`);
  });
  dash.initialize(video, href, false);
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
  if (dash) { dash.reset(); dash = null; }
  video.removeAttribute("src");
  const dashUrl = isDash(url, params);
  const engine = dashUrl ? dashEngine() : isHls(url, params) ? hlsEngine(params) : "native";
  video.dataset.engine = engine || "";
  if (engine === null) {
    say(dashUrl ? "this browser has no Media Source Extensions for DASH"
      : "this browser plays neither HLS nor Media Source Extensions");
    return;
  }
  say("loading");
  if (engine === "hls.js") playWithHlsJs(url.href);
  else if (engine === "dash.js") playWithDashJs(url.href);
  else video.src = url.href;
}

video.addEventListener("loadedmetadata", () => {
  const from = hls ? "hls.js" : dash ? "dash.js" : new URL(video.currentSrc).host;
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
