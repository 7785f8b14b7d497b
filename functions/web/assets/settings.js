// Settings: the webhook (set, see, remove; its secret shown once) and deleting the account.

import { ApiError, call, forget } from "./api.js";
import { confirm, h, onSubmit, replace, toast, when } from "./ui.js";

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
  const element = h("section", { class: "page", "aria-labelledby": "settings-title" }, h("h1", { id: "settings-title" }, "Settings"), webhookSection(), accountSection(navigate));
  return { element, title: "Settings" };
}
