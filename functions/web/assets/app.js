// The app: a router over the pages, the header, and the one live event stream while signed in.

import { call, forget, onSignedOut, session } from "./api.js";
import { registerPage, signInPage } from "./account.js";
import { convertPage } from "./convert.js";
import { jobList } from "./jobs.js";
import { notificationsPage, refreshUnread, showUnread } from "./notifications.js";
import { settingsPage } from "./settings.js";
import { follow } from "./sse.js";
import { apply, clear, onResync, onUnread } from "./store.js";
import { h, replace } from "./ui.js";

const PUBLIC = { "/signin": signInPage, "/register": registerPage };

/** The page `path` names in `table`, if any (own keys only: not `constructor` and the like). */
function pageIn(table, path) {
  return typeof path === "string" && Object.hasOwn(table, path) ? table[path] : undefined;
}

function jobsPage() {
  const list = jobList({ limit: 20, paged: true });
  return {
    element: h("section", { class: "page", "aria-labelledby": "jobs-title" }, h("h1", { id: "jobs-title" }, "My conversions"), list.element),
    title: "My conversions",
    dispose: list.dispose,
  };
}

const PRIVATE = {
  "/": convertPage,
  "/jobs": jobsPage,
  "/notifications": notificationsPage,
  "/settings": settingsPage,
};

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const badge = document.getElementById("badge");
const whoami = document.getElementById("whoami");
const live = document.getElementById("live");
let current = null;
let stream = null;

function startStream() {
  if (stream) return;
  stream = follow(apply, (state) => {
    live.dataset.state = state;
    replace(live, state === "live" ? "Live" : state === "reconnecting" ? "Reconnecting…" : "Offline");
  });
  refreshUnread();
}

function stopStream() {
  if (stream) stream.stop();
  stream = null;
  clear();
}

/** Shows the page for the current address; signed-out visits go to sign in and come back. */
function render() {
  // `/jobs/` is `/jobs`.
  if (location.pathname.length > 1 && location.pathname.endsWith("/")) {
    history.replaceState(null, "", location.pathname.replace(/\/+$/, "") + location.search);
  }
  const path = location.pathname;
  const query = new URLSearchParams(location.search);
  const signedIn = session() !== null;
  if (current && current.dispose) current.dispose();
  current = null;

  const publicPage = pageIn(PUBLIC, path);
  const privatePage = pageIn(PRIVATE, path);
  if (!publicPage && !privatePage) {
    navigate("/", true);
    return;
  }
  if (privatePage && !signedIn) {
    navigate("/signin" + (path !== "/" ? "?next=" + encodeURIComponent(path) : ""), true);
    return;
  }
  if (publicPage && signedIn) {
    navigate(pageIn(PRIVATE, query.get("next")) ? query.get("next") : "/", true);
    return;
  }

  nav.hidden = !signedIn;
  if (signedIn) {
    replace(whoami, session().email);
    startStream();
  } else {
    stopStream();
  }
  for (const link of nav.querySelectorAll("a[data-link]")) {
    if (link.getAttribute("href") === path) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }

  current = (publicPage || privatePage)(navigate, query);
  main.replaceChildren(current.element);
  document.title = current.title + " · mp3conv";
  const focus = current.focus && main.querySelector(current.focus);
  if (focus) focus.focus();
  else {
    const heading = main.querySelector("h1");
    heading?.setAttribute("tabindex", "-1");
    heading?.focus();
  }
}

/** Goes to `path` inside the app without reloading. */
function navigate(path, replaceEntry = false) {
  if (replaceEntry) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  render();
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});
window.addEventListener("popstate", render);
document.getElementById("signout").addEventListener("click", async () => {
  // The token is refused from now on, not only forgotten here; if the server cannot be
  // reached, it is forgotten all the same.
  await call("POST", "/v1/logout").catch(() => {});
  forget();
});
onSignedOut(() => {
  stopStream();
  const path = location.pathname;
  navigate(pageIn(PRIVATE, path) && path !== "/" ? "/signin?next=" + encodeURIComponent(path) : "/signin", true);
});
onUnread((count) => showUnread(badge, count));
onResync(refreshUnread);
// Another tab signed in or out: follow it.
window.addEventListener("storage", (event) => {
  if (event.key === "mp3conv.session") {
    stopStream();
    render();
  }
});

render();
// The first page is drawn and answers input (make bench reads this mark).
performance.mark("mp3conv:ready");
