// Settings: what the caller uses of their limits, the webhook (set, see, remove; its secret
// shown once) and deleting the account.

import { ApiError, call, forget } from "./api.js";
import { bytes, confirm, h, onSubmit, replace, toast, when } from "./ui.js";

/** One limit as a row: what is used of it, with a meter when there is a limit. */
function usageRow(id, label, used, limit, words) {
  const value = limit === null ? words(used) + " (no limit)" : words(used) + " of " + words(limit);
  const row = h("div", { class: "usage-row", id }, h("dt", {}, label), h("dd", {}, value));
  if (limit !== null && limit > 0) {
    row.append(h("meter", { min: "0", max: String(limit), value: String(Math.min(used, limit)), high: String(limit * 0.9), "aria-label": label }));
  }
  return row;
}

function hours(seconds) {
  if (seconds === null) return "no limit";
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return h > 0 ? h + " h" + (m ? " " + m + " min" : "") : m + " min";
}

function usageSection() {
  const list = h("dl", { id: "usage", class: "usage" }, h("dd", {}, "Loading…"));
  async function load() {
    try {
      const me = await call("GET", "/v1/me");
      if (!me.quota) {
        replace(list, h("dd", {}, "Your usage cannot be shown just now."));
        return;
      }
      const { limits, usage } = me.quota;
      const count = (n) => String(n);
      replace(
        list,
        usageRow("usage-storage", "Storage", usage.storage_bytes, limits.storage_bytes, bytes),
        usageRow("usage-concurrent", "Conversions at once", usage.concurrent_jobs, limits.concurrent_jobs, count),
        usageRow("usage-hourly", "Conversions in the last hour", usage.jobs_per_hour, limits.jobs_per_hour, count),
        h("div", { class: "usage-row", id: "usage-largest" }, h("dt", {}, "Largest video"), h("dd", {}, limits.max_upload_bytes === null ? "the service's limit" : bytes(limits.max_upload_bytes))),
        h("div", { class: "usage-row", id: "usage-longest" }, h("dt", {}, "Longest video"), h("dd", {}, hours(limits.max_duration_secs))),
      );
    } catch (failure) {
      replace(list, h("dd", {}, failure.message));
    }
  }
  load();
  return h(
    "section",
    { class: "card", "aria-labelledby": "usage-title" },
    h("h2", { id: "usage-title" }, "Your usage"),
    list,
    h("p", { class: "muted" }, "MP3s are kept for a limited time; deleting conversions makes room."),
  );
}

function webhookSection() {
  const current = h("p", { id: "webhook-current" }, "Loading…");
  const url = h("input", { type: "url", id: "webhook-url", required: true, placeholder: "https://example.com/hooks/mp3conv", autocomplete: "off" });
  const save = h("button", { type: "submit", id: "webhook-save" }, "Save webhook");
  const remove = h("button", { type: "button", id: "webhook-remove", class: "secondary", hidden: true }, "Remove webhook");
  const error = h("p", { id: "webhook-error", class: "error", role: "alert", hidden: true });
  const secretBox = h("div", { id: "webhook-secret-box", class: "notice", hidden: true });

  function show(webhook) {
    if (webhook) {
      replace(current, "Deliveries go to ", h("code", { id: "webhook-current-url" }, webhook.url), " (set ", when(webhook.created_at), ").");
      remove.hidden = false;
    } else {
      replace(current, "No webhook is set. Set one to have each finished conversion posted to your server.");
      remove.hidden = true;
    }
  }

  async function load() {
    try {
      show(await call("GET", "/v1/me/webhook"));
    } catch (failure) {
      if (failure instanceof ApiError && failure.status === 404) show(null);
      else toast(failure.message);
    }
  }

  const form = h(
    "form",
    { id: "webhook-form" },
    h("label", { for: "webhook-url" }, "Webhook address (https)"),
    h("div", { class: "inline" }, url, save),
    error,
  );
  onSubmit(form, { button: save, error }, async () => {
    const webhook = await call("PUT", "/v1/me/webhook", { body: { url: url.value.trim() } });
    show(webhook);
    url.value = "";
    const secret = h("code", { id: "webhook-secret" }, webhook.secret);
    const copy = h("button", { type: "button", id: "webhook-copy", class: "secondary" }, "Copy");
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(webhook.secret);
        replace(copy, "Copied");
      } catch {
        const range = document.createRange();
        range.selectNodeContents(secret);
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        replace(copy, "Selected: press Ctrl+C");
      }
    });
    replace(
      secretBox,
      h("p", {}, "Your signing secret. It is shown only this once: keep it where your receiver can read it."),
      h("div", { class: "inline" }, secret, copy),
    );
    secretBox.hidden = false;
  });
  remove.addEventListener("click", async () => {
    if (!(await confirm("Remove the webhook? Finished conversions will no longer be posted to it.", "Remove"))) return;
    try {
      await call("DELETE", "/v1/me/webhook");
      secretBox.hidden = true;
      show(null);
      toast("Webhook removed.");
    } catch (failure) {
      toast(failure.message);
    }
  });
  load();
  return h("section", { class: "card", "aria-labelledby": "webhook-title" }, h("h2", { id: "webhook-title" }, "Webhook"), current, form, secretBox, remove);
}

function accountSection(navigate) {
  const button = h("button", { type: "button", id: "delete-account", class: "danger" }, "Delete my account");
  button.addEventListener("click", async () => {
    const sure = await confirm("Delete your account, every conversion and every MP3? This cannot be undone.", "Delete everything");
    if (!sure) return;
    button.disabled = true;
    try {
      await call("DELETE", "/v1/me");
      forget();
      navigate("/signin?deleted=1");
    } catch (failure) {
      button.disabled = false;
      toast(failure.message);
    }
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "account-title" },
    h("h2", { id: "account-title" }, "Account"),
    h("p", {}, "Deleting your account removes your conversions, your MP3s, your notifications and your webhook."),
    button,
  );
}

export function settingsPage(navigate) {
  const element = h("section", { class: "page", "aria-labelledby": "settings-title" }, h("h1", { id: "settings-title" }, "Settings"), usageSection(), webhookSection(), accountSection(navigate));
  return { element, title: "Settings" };
}
