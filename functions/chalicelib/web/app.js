// fsnode upload page. The API key lives in sessionStorage (this tab only), never in
// localStorage or a cookie. Files go straight to S3 through presigned multipart parts;
// each chunk's SHA-256 (edges verify it) and each part's (S3 verifies it) is computed
// here with crypto.subtle.
"use strict";

const KEY_NAME = "fsnode-api-key";
const PARALLEL_PARTS = 3;
const S3_MAX_PARTS = 10000;
const $ = (sel) => document.querySelector(sel);

function apiKey() { return sessionStorage.getItem(KEY_NAME); }

function showError(err) { $("#error").textContent = err ? String(err.message || err) : ""; }

async function api(method, path, body) {
  // The same header as the CLI, locally and in AWS: API Gateway's authorizer reads it.
  const headers = apiKey() ? { authorization: `Bearer ${apiKey()}` } : {};
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!response.ok) {
    const message = (data && data.error && data.error.message) || text || response.statusText;
    if (response.status === 401) { sessionStorage.removeItem(KEY_NAME); showKeyForm(); }
    throw new Error(`${method} ${path}: ${message} (${response.status})`);
  }
  return data;
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

function humanSize(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

let configPromise = null;
function config() {
  configPromise = configPromise || fetch("web/config.json").then((r) => r.json());
  return configPromise;
}

// The part size of a file of `size` bytes, as the control plane lays it out
// (fsnode_core.chunks.part_size_for): the published part size, grown in whole chunks so
// no file needs more than S3's 10,000 parts.
function partSizeFor(size, chunkSize, minPartSize) {
  const least = Math.max(minPartSize, Math.ceil(size / S3_MAX_PARTS));
  return Math.ceil(least / chunkSize) * chunkSize;
}

// One read per multipart part (whole chunks): the part's SHA-256, which S3 checks
// the PUT against, and each of its chunks' SHA-256, which edges check. subtle.digest
// has no running hash, so the part is digested whole and its chunks as views of it.
async function fileHashes(file, chunkSize, partSize, onProgress) {
  const chunks = [];
  const parts = [];
  let offset = 0;
  do {  // an empty file is one empty part
    const buffer = await file.slice(offset, offset + partSize).arrayBuffer();
    parts.push(hex(await crypto.subtle.digest("SHA-256", buffer)));
    for (let at = 0; at < buffer.byteLength; at += chunkSize) {
      const view = new Uint8Array(buffer, at, Math.min(chunkSize, buffer.byteLength - at));
      chunks.push(hex(await crypto.subtle.digest("SHA-256", view)));
    }
    offset += partSize;
    onProgress(Math.min(offset, file.size));
  } while (offset < file.size);
  return { chunks, parts };
}

// Part URLs come a page at a time (POST /files answers the first): partAt(i) (0-based)
// fetches the next page, once however many workers wait on it, when i is not listed yet.
function partLister(init, fetchPage) {
  const listed = [...init.parts];
  let nextPart = init.next_part;
  let fetching = null;
  return async function partAt(i) {
    while (i >= listed.length) {
      if (nextPart === null || nextPart === undefined) throw new Error(`part ${i + 1} was never listed`);
      fetching = fetching || fetchPage(nextPart).then((page) => {
        if (page.upload_id !== init.upload_id) throw new Error("the upload was replaced by another");
        listed.push(...page.parts);
        nextPart = page.next_part;
      }).finally(() => { fetching = null; });
      await fetching;
    }
    return listed[i];
  };
}

// XMLHttpRequest, not fetch: it reports upload progress.
function putPart(url, headers, blob, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    // The URL signs these (the part's x-amz-checksum-sha256): S3 refuses the PUT without them.
    for (const [name, value] of Object.entries(headers || {})) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => {
      const etag = xhr.getResponseHeader("ETag");
      if (xhr.status === 400 && /BadDigest/.test(xhr.responseText)) {
        reject(new Error("S3 refused a part: its bytes changed after hashing (BadDigest)"));
      } else if (xhr.status !== 200) reject(new Error(`S3 refused a part (${xhr.status})`));
      else if (!etag) reject(new Error("S3 hid the part's ETag: the bucket's CORS rules must expose ETag"));
      else resolve(etag);
    };
    xhr.onerror = () => reject(new Error("the part upload failed (network or CORS)"));
    xhr.send(blob);
  });
}

// Uploads `file` as `path` (default its name: a folder's files pass their relative
// path). Resolves to the file record, or null when it failed (the row says why).
async function uploadFile(file, path = file.name, refresh = true) {
  const row = document.createElement("li");
  const label = document.createElement("span");
  const bar = document.createElement("progress");
  bar.max = Math.max(file.size, 1);
  bar.value = 0;
  row.append(bar, " ", label);
  row.dataset.name = path;
  $("#uploads").append(row);
  const say = (text) => { label.textContent = `${path}: ${text}`; };
  try {
    const { chunk_size: chunkSize, part_size: minPartSize } = await config();
    const partSize = partSizeFor(file.size, chunkSize, minPartSize);
    say("hashing");
    const hashes = await fileHashes(file, chunkSize, partSize, (done) => say(`hashing ${Math.round(100 * done / Math.max(file.size, 1))}%`));
    const init = await api("POST", "files", {
      // The control plane names the type by extension (one table for every uploader).
      path, size: file.size,
      chunk_sha256: hashes.chunks, part_sha256: hashes.parts,
    });
    const sent = new Map();
    const update = () => {
      let total = 0;
      for (const n of sent.values()) total += n;
      bar.value = total;
      say(`uploading ${humanSize(total)} of ${humanSize(file.size)}`);
    };
    const partAt = partLister(init, (first) => api("GET", `files/${init.file_id}/parts?first=${first}`));
    const count = init.part_count;
    const etags = new Array(count);
    let next = 0;
    async function worker() {
      while (next < count) {
        const i = next++;
        const part = await partAt(i);
        const blob = file.slice(part.offset, part.offset + part.length);
        etags[i] = await putPart(part.url, part.headers, blob, (n) => { sent.set(i, n); update(); });
        sent.set(i, part.length);
        update();
      }
    }
    await Promise.all(Array.from({ length: Math.min(PARALLEL_PARTS, count) }, worker));
    const parts = etags.map((etag, i) => ({ part_number: i + 1, etag }));
    const record = await api("POST", `files/${init.file_id}/complete`, { parts });
    bar.value = bar.max;
    say(`done (${record.file_id})`);
    row.dataset.fileId = record.file_id;
    row.classList.add("done");
    if (refresh) await listFiles();
    return record;
  } catch (err) {
    say(`failed: ${err.message}`);
    row.classList.add("failed");
    showError(err);
    return null;
  }
}

function handleFiles(files) {
  showError(null);
  for (const file of Array.from(files)) uploadFile(file);
}

async function copyText(input) {
  try {
    await navigator.clipboard.writeText(input.value);
  } catch (_) {
    input.select();
    document.execCommand("copy");  // clipboard API needs focus/permission; old fallback
  }
}

// A share link to copy, and a Play link to the player when `playUrl` is given.
function shareBox(shareUrl, playUrl) {
  const box = document.createElement("span");
  box.className = "share";
  const input = document.createElement("input");
  input.readOnly = true;
  input.value = shareUrl;
  input.className = "share-url";
  const copy = document.createElement("button");
  copy.type = "button";
  copy.textContent = "Copy";
  copy.addEventListener("click", () => copyText(input));
  box.append(input, " ", copy);
  if (playUrl) {
    const play = document.createElement("a");
    play.textContent = "Play";
    play.className = "play";
    play.href = `player?src=${encodeURIComponent(playUrl)}`;
    box.append(" ", play);
  }
  return box;
}

function shareTtl() { return parseInt($("#ttl").value, 10) || 86400; }

async function share(file, cell) {
  const answer = await api("POST", `files/${file.file_id}/share`, { ttl_seconds: shareTtl() });
  cell.textContent = "";
  cell.append(shareBox(answer.share_url, answer.share_url));
}

async function listFiles() {
  const body = $("#files tbody");
  const files = [];
  let token = null;
  do {
    const page = await api("GET", token ? `files?next_token=${encodeURIComponent(token)}` : "files");
    files.push(...page.files);
    token = page.next_token;
  } while (token);
  body.textContent = "";
  for (const file of files) {
    const tr = document.createElement("tr");
    tr.dataset.fileId = file.file_id;
    const name = document.createElement("td");
    name.textContent = file.path || file.name || "";
    const size = document.createElement("td");
    size.textContent = humanSize(file.size);
    const id = document.createElement("td");
    const code = document.createElement("code");
    code.textContent = file.file_id;
    id.append(code);
    const action = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "share-button";
    button.textContent = "Share";
    button.addEventListener("click", () => share(file, action).catch(showError));
    action.append(button);
    tr.append(name, size, id, action);
    body.append(tr);
  }
}

function showKeyForm() {
  $("#key-form").hidden = false;
  $("#app").hidden = true;
  $("#forget-key").hidden = true;
}

function showApp() {
  $("#key-form").hidden = true;
  $("#app").hidden = false;
  $("#forget-key").hidden = false;
  listFiles().catch(showError);
}

function wire() {
  const drop = $("#drop");
  const input = $("#file-input");
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    handleDrop(e.dataTransfer);  // folders.js: folders keep their paths
  });
  // The drop zone and the picker feed the same path.
  input.addEventListener("change", () => { handleFiles(input.files); input.value = ""; });
  $("#refresh").addEventListener("click", () => listFiles().catch(showError));
  $("#key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY_NAME, $("#api-key").value.trim());
    $("#api-key").value = "";
    showApp();
  });
  $("#forget-key").addEventListener("click", () => { sessionStorage.removeItem(KEY_NAME); showKeyForm(); });
  if (!window.crypto || !crypto.subtle) {
    showError("This page needs a secure context (HTTPS or localhost) for crypto.subtle.");
  }
  if (apiKey()) showApp(); else showKeyForm();
}

wire();
