// Notifications: newest first, paged; unread ones marked, each can be marked read.

import { call } from "./api.js";
import { onNotification, onResync, setUnread, unreadCount } from "./store.js";
import { h, replace, toast, when } from "./ui.js";

/** Counts the unread notifications (up to 100, "99+" beyond) for the badge. */
export async function refreshUnread() {
  try {
    const page = await call("GET", "/v1/notifications?unread=true&limit=100");
    setUnread(page.notifications.length + (page.next_cursor ? 1 : 0));
  } catch {
    // The badge keeps its count; the next resync or page visit tries again.
  }
}

function item(notification) {
  const read = h("button", { type: "button", class: "secondary notification-read" }, "Mark as read");
  const element = h(
    "li",
    { class: "notification", "data-id": notification.id, "data-read": String(notification.read) },
    h("div", { class: "notification-head" }, h("strong", { class: "notification-title" }, notification.title), h("span", { class: "muted" }, when(notification.created_at))),
    h("p", { class: "notification-message" }, notification.message),
    notification.read ? null : read,
  );
  if (notification.status === "done") {
    element.append(h("a", { href: "/jobs", "data-link": true }, "Go to the download"));
  }
  read.addEventListener("click", async () => {
    read.disabled = true;
    try {
      await call("POST", "/v1/notifications/" + notification.id + "/read");
      element.dataset.read = "true";
      read.remove();
      setUnread(unreadCount() - 1);
    } catch (error) {
      read.disabled = false;
      toast(error.message);
    }
  });
  return element;
}

export function notificationsPage() {
  const list = h("ul", { class: "notifications", id: "notifications-list" });
  const empty = h("p", { class: "muted", id: "notifications-empty", hidden: true }, "No notifications yet.");
  const more = h("button", { type: "button", id: "notifications-more", class: "secondary", hidden: true }, "Show more");
  const allRead = h("button", { type: "button", id: "notifications-all-read", class: "secondary" }, "Mark all as read");
  let cursor = null;
  let disposed = false;

  async function load(reset) {
    try {
      const query = "?limit=20" + (cursor && !reset ? "&cursor=" + encodeURIComponent(cursor) : "");
      const page = await call("GET", "/v1/notifications" + query);
      if (disposed) return;
      if (reset) list.replaceChildren();
      for (const notification of page.notifications) list.append(item(notification));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      empty.hidden = list.childElementCount > 0;
    } catch (error) {
      if (!disposed) toast(error.message);
    }
  }

  more.addEventListener("click", () => load(false));
  allRead.addEventListener("click", async () => {
    allRead.disabled = true;
    for (const button of list.querySelectorAll(".notification-read")) button.click();
    allRead.disabled = false;
  });
  const unsubscribe = onNotification((notification) => {
    list.prepend(item(notification));
    empty.hidden = true;
  });
  const unsubscribeResync = onResync(() => load(true));
  load(true);

  const element = h(
    "section",
    { class: "page", "aria-labelledby": "notifications-title" },
    h("div", { class: "title-row" }, h("h1", { id: "notifications-title" }, "Notifications"), allRead),
    list,
    empty,
    more,
  );
  return {
    element,
    title: "Notifications",
    dispose() {
      disposed = true;
      unsubscribe();
      unsubscribeResync();
    },
  };
}

/** Writes the badge's count into `badge` (hidden at 0). */
export function showUnread(badge, count) {
  badge.hidden = count === 0;
  replace(badge, count > 99 ? "99+" : String(count));
  badge.setAttribute("aria-label", count + " unread");
}
