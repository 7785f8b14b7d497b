// The list of the caller's conversions: newest first, paged, live.

import { audio, call, track, tracksZip } from "./api.js";
import { dropJob, onJob, onResync, putJob } from "./store.js";
import { bytes, confirm, duration, failure, h, jobName, mp3Name, optionWords, replace, toast, when } from "./ui.js";

const STATUS_WORDS = {
  queued: "Waiting for its turn",
  downloading: "Fetching the video",
  converting: "Converting",
  done: "Ready",
  failed: "Failed",
  expired: "Expired: the MP3 was removed",
};

/**
 * One job's card; `update` redraws it in place (an audio player keeps playing); `release`
 * lets go of the MP3 it holds, if it fetched it.
 */
function card(job) {
  // A link's name changes once: when its video page has been read, to the page's title.
  let name = jobName(job);
  const title = h("span", { class: "job-name" }, name);
  const status = h("span", { class: "job-status" });
  const progress = h("progress", { class: "job-progress", max: "100", "aria-label": "Progress of " + name });
  const error = h("p", { class: "job-error", hidden: true });
  const ready = h("div", { class: "job-ready", hidden: true });
  const keep = h("p", { class: "job-keep", hidden: true });
  const remove = h("button", { type: "button", class: "job-delete secondary", "aria-label": "Delete " + name }, "Delete");
  let release = () => {};
  // The options it runs with: they never change over a job's life.
  const words = optionWords(job.options);
  const element = h(
    "li",
    { class: "job", "data-job-id": job.id },
    h(
      "div",
      { class: "job-head" },
      title,
      h("span", { class: "job-meta" }, when(job.created_at), " · ", job.bitrate.startsWith("v") ? "VBR " + job.bitrate.toUpperCase() : job.bitrate + " kbit/s"),
      words.length ? h("span", { class: "job-options" }, "Options: " + words.join(" · ")) : null,
    ),
    h("div", { class: "job-state", "aria-live": "polite" }, status, progress, error, ready, keep),
    h("div", { class: "job-actions" }, remove),
  );
  remove.addEventListener("click", async () => {
    if (!(await confirm("Delete “" + name + "” and its MP3? This cannot be undone.", "Delete"))) return;
    remove.disabled = true;
    try {
      await call("DELETE", "/v1/jobs/" + job.id);
      dropJob(job.id);
      toast("Deleted “" + name + "”.");
    } catch (error) {
      remove.disabled = false;
      toast(error.message);
    }
  });

  function update(next) {
    if (jobName(next) !== name) {
      name = jobName(next);
      replace(title, name);
      progress.setAttribute("aria-label", "Progress of " + name);
      remove.setAttribute("aria-label", "Delete " + name);
    }
    element.dataset.status = next.status;
    const words = STATUS_WORDS[next.status] || next.status;
    const active = next.status === "downloading" || next.status === "converting";
    replace(status, active && next.progress > 0 ? words + " " + next.progress + "%" : words);
    progress.hidden = next.status === "done" || next.status === "failed" || next.status === "expired";
    if (next.status === "queued") progress.removeAttribute("value");
    else progress.value = next.progress;
    error.hidden = next.status !== "failed";
    replace(error, failure(next.error));
    if (next.status === "done" && next.audio && ready.hidden) {
      ready.hidden = false;
      const part = readyPart(next);
      release = part.release;
      replace(ready, part.elements);
    }
    if (next.status === "expired" && !ready.hidden) {
      // The MP3 is gone from the server: so are the player and the download buttons.
      release();
      release = () => {};
      ready.hidden = true;
      replace(ready);
    }
    const until = next.status === "done" && next.expires_at ? when(next.expires_at) : "";
    keep.hidden = !until;
    replace(keep, until ? "Kept until " + until : "");
  }
  update(job);
  return { element, update, release: () => release() };
}

/** Saves the file at `url` (a blob URL of this page's) as `name`. */
function save(url, name) {
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
}

/** Track `number`'s file name: the MP3's, then the number and the chapter's title. */
function trackName(job, number, title) {
  const base = mp3Name(job).replace(/\.mp3$/, "");
  const safe = String(title || "").replace(/[\u0000-\u001f\u007f/\\:*?"<>|]/g, "_").trim().replace(/^\.+/, "").slice(0, 100);
  return base + " - " + String(number).padStart(2, "0") + (safe ? " - " + safe : "") + ".mp3";
}

/**
 * A button that fetches a file (`load()`, a Blob) on its first click, keeps it as a blob URL
 * in `held` and saves it as `name`.
 */
function downloadButton(label, attributes, name, load, held) {
  const button = h("button", { type: "button", ...attributes }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      if (!held.has(name)) held.set(name, URL.createObjectURL(await load()));
      save(held.get(name), name);
    } catch (error) {
      toast(error.message);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

/**
 * A done job split by chapters: its tracks, each downloadable, and all of them as one ZIP.
 * Each file is fetched on its first download and held in `held` until the card lets go.
 */
function tracksPart(job, held) {
  const name = jobName(job);
  const list = h(
    "ol",
    { class: "job-tracks", "aria-label": "Tracks of " + name },
    job.tracks.map((t) =>
      h(
        "li",
        { class: "job-track", "data-number": t.number },
        h("span", { class: "job-track-title" }, t.title),
        h("span", { class: "job-track-facts" }, duration(t.audio.duration), " · ", bytes(t.audio.size)),
        downloadButton(
          "Download",
          { class: "job-track-download secondary", "aria-label": "Download track " + t.number + ": " + t.title },
          trackName(job, t.number, t.title),
          () => track(job.id, t.number),
          held,
        ),
      ),
    ),
  );
  const zip = downloadButton(
    "Download all (ZIP)",
    { class: "job-zip secondary" },
    mp3Name(job).replace(/\.mp3$/, "") + ".zip",
    () => tracksZip(job.id),
    held,
  );
  return [h("p", { class: "job-tracks-title" }, job.tracks.length + " tracks, one per chapter:"), list, zip];
}

/**
 * A done job's MP3: its length and size, a download button and a player (and its tracks,
 * when split by chapters). The MP3 is fetched on the first Download or Play and held (as a
 * blob URL) until `release`.
 */
function readyPart(job) {
  const file = mp3Name(job);
  // Tracks and the ZIP, by file name, once fetched.
  const held = new Map();
  const player = h("audio", { class: "job-audio", controls: true, preload: "none", hidden: true, "aria-label": "Play " + file });
  const download = h("button", { type: "button", class: "job-download" }, "Download MP3");
  const play = h("button", { type: "button", class: "job-play secondary" }, "Play");
  let blobUrl = null;
  async function load() {
    if (!blobUrl) blobUrl = URL.createObjectURL(await audio(job.id));
    return blobUrl;
  }
  download.addEventListener("click", async () => {
    download.disabled = true;
    try {
      save(await load(), file);
    } catch (error) {
      toast(error.message);
    } finally {
      download.disabled = false;
    }
  });
  play.addEventListener("click", async () => {
    play.disabled = true;
    try {
      player.src = await load();
      player.hidden = false;
      play.hidden = true;
      await player.play().catch(() => {});
    } catch (error) {
      play.disabled = false;
      toast(error.message);
    }
  });
  return {
    elements: [
      h("span", { class: "job-audio-facts" }, duration(job.audio.duration), " · ", bytes(job.audio.size)),
      h("div", { class: "job-buttons" }, download, play),
      player,
      ...(Array.isArray(job.tracks) && job.tracks.length ? tracksPart(job, held) : []),
    ],
    release() {
      for (const url of held.values()) URL.revokeObjectURL(url);
      held.clear();
      if (!blobUrl) return;
      player.removeAttribute("src");
      player.load();
      URL.revokeObjectURL(blobUrl);
      blobUrl = null;
    },
  };
}

/**
 * The caller's jobs, newest first: `limit` per page, a "Show more" button when `paged`.
 * Answers `{ element, dispose }`.
 */
export function jobList({ limit = 20, paged = true, empty = "No conversions yet." } = {}) {
  const list = h("ul", { class: "jobs", id: "jobs-list" });
  const note = h("p", { class: "muted", id: "jobs-empty", hidden: true }, empty);
  const more = h("button", { type: "button", id: "jobs-more", class: "secondary", hidden: true }, "Show more");
  const cards = new Map();
  let cursor = null;
  // Answers that arrive after the page is gone (another page, another account) are dropped.
  let disposed = false;

  function add(job, atTop) {
    const shown = card(job);
    shown.created_at = job.created_at;
    cards.set(job.id, shown);
    if (atTop) list.prepend(shown.element);
    else list.append(shown.element);
  }

  function newest() {
    const first = list.firstElementChild;
    const shown = first && cards.get(first.dataset.jobId);
    return shown ? shown.created_at : "";
  }

  function refreshEmpty() {
    note.hidden = cards.size > 0;
  }

  async function load(reset) {
    const query = "?limit=" + limit + (cursor && !reset ? "&cursor=" + encodeURIComponent(cursor) : "");
    try {
      const page = await call("GET", "/v1/jobs" + query);
      if (disposed) return;
      if (reset) {
        for (const shown of cards.values()) shown.release();
        cards.clear();
        list.replaceChildren();
      }
      for (const job of page.jobs) {
        putJob(job);
        if (!cards.has(job.id)) add(job, false);
      }
      cursor = page.next_cursor;
      more.hidden = !paged || !cursor;
      refreshEmpty();
    } catch (error) {
      if (!disposed) toast(error.message);
    }
  }

  more.addEventListener("click", () => load(false));
  const unsubscribe = onJob((id, job) => {
    const shown = cards.get(id);
    if (!job) {
      if (shown) {
        shown.release();
        shown.element.remove();
        cards.delete(id);
        refreshEmpty();
      }
    } else if (shown) {
      shown.update(job);
    } else if (cards.size === 0 || job.created_at >= newest()) {
      // A new job; one from further down the list shows when its page is loaded.
      add(job, true);
      refreshEmpty();
    }
  });
  const unsubscribeResync = onResync(() => load(true));
  load(true);
  return {
    element: h("div", { class: "job-list" }, list, note, more),
    dispose() {
      disposed = true;
      unsubscribe();
      unsubscribeResync();
      for (const shown of cards.values()) shown.release();
    },
  };
}
