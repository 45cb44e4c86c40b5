// fsnode folders on the upload page: a folder (picked, or dropped) is uploaded with its
// relative paths, under an optional prefix, as `fsnode sync DIR --prefix P` names them;
// a folder share (POST /shares) has a share_url ending in "/", and a file below the
// folder is share_url + its relative path, so HLS and DASH playlists play from it.
// Uses app.js's api, uploadFile, handleFiles, listFiles, shareBox, shareTtl, showError.
"use strict";

const PARALLEL_FILES = 4;

// Every file under a dropped entry, with its path relative to the drop (the folder's
// own name first, like a picked folder's webkitRelativePath).
async function entryFiles(entry, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push({ file, relative: entry.fullPath.replace(/^\/+/, "") });
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (;;) {  // readEntries answers in batches (Chromium: 100) until an empty one
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) break;
      for (const child of batch) await entryFiles(child, out);
    }
  }
  return out;
}

// The prefix field as a folder: "" or ending in "/".
function uploadPrefix() {
  const value = $("#prefix").value.trim().replace(/^\/+/, "");
  return value && !value.endsWith("/") ? `${value}/` : value;
}

// A drop: folders keep their paths; a drop of plain files uploads them by name.
function handleDrop(dataTransfer) {
  showError(null);
  // Entries must be taken during the drop event; reading them may come later.
  const entries = Array.from(dataTransfer.items || [],
    (item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null)).filter(Boolean);
  if (!entries.some((entry) => entry.isDirectory)) {
    handleFiles(dataTransfer.files);
    return;
  }
  (async () => {
    const found = [];
    for (const entry of entries) await entryFiles(entry, found);
    await uploadTree(found);
  })().catch(showError);
}

// Uploads [{file, relative}] as prefix + relative, a few files at a time, then lists
// each top folder it made with a button that shares it.
async function uploadTree(found) {
  const prefix = uploadPrefix();
  const queue = [...found];
  const failed = [];
  async function worker() {
    while (queue.length) {
      const { file, relative } = queue.shift();
      if (!(await uploadFile(file, prefix + relative, false))) failed.push(relative);
    }
  }
  await Promise.all(Array.from({ length: Math.min(PARALLEL_FILES, queue.length) }, worker));
  await listFiles();
  const tops = new Set(found.filter((f) => f.relative.includes("/"))
    .map((f) => f.relative.split("/")[0]));
  for (const top of tops) addFolder(`${prefix}${top}/`, failed.length === 0);
  if (failed.length) showError(`${failed.length} file(s) of the folder failed: ${failed.join(", ")}`);
}

function addFolder(folder, complete) {
  const row = document.createElement("li");
  row.dataset.folder = folder;
  row.classList.add(complete ? "done" : "failed");
  const name = document.createElement("code");
  name.textContent = folder;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "share-folder";
  button.textContent = "Share folder";
  const cell = document.createElement("span");
  button.addEventListener("click", () => shareFolder(folder, cell).catch(showError));
  row.append(name, " ", button, " ", cell);
  $("#folders").append(row);
  return row;
}

// The playlist to open in the player: master.m3u8 at the folder's top, else the first
// .m3u8 there (the share's listing is in path order). DASH has no player here.
function playlistOf(files) {
  const top = files.map((f) => f.path).filter((p) => !p.includes("/") && p.endsWith(".m3u8"));
  return top.includes("master.m3u8") ? "master.m3u8" : top[0];
}

// The folder's files (relative paths): its share URL answers its listing, a page at a time.
async function folderFiles(shareUrl) {
  const files = [];
  let token = null;
  do {
    const url = token ? `${shareUrl}?next_token=${encodeURIComponent(token)}` : shareUrl;
    const response = await fetch(url, { headers: { accept: "application/json" } });
    if (!response.ok) throw new Error(`listing the folder share: ${response.status}`);
    const page = await response.json();
    files.push(...page.files);
    token = page.next_token;
  } while (token);
  return files;
}

async function shareFolder(folder, cell) {
  const answer = await api("POST", "shares", { prefix: folder, ttl_seconds: shareTtl() });
  const playlist = playlistOf(await folderFiles(answer.share_url));
  cell.textContent = "";
  cell.append(shareBox(answer.share_url, playlist ? answer.share_url + playlist : null));
  cell.closest("li").dataset.shareUrl = answer.share_url;
}

function wireFolders() {
  const input = $("#folder-input");
  $("#choose-folder").addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    showError(null);
    // webkitRelativePath starts with the picked folder's own name.
    const found = Array.from(input.files, (file) => ({ file, relative: file.webkitRelativePath || file.name }));
    input.value = "";
    uploadTree(found).catch(showError);
  });
  $("#folder-share-form").addEventListener("submit", (e) => {
    e.preventDefault();
    let folder = $("#folder-prefix").value.trim().replace(/^\/+/, "");
    if (folder && !folder.endsWith("/")) folder += "/";
    shareFolder(folder, addFolder(folder, true).lastChild).catch(showError);
  });
}

wireFolders();
