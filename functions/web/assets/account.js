// Sign in and register. Both return to where the person was going (`?next=`).

import { register, signIn } from "./api.js";
import { h, onSubmit } from "./ui.js";

/** A path inside this app to go to after signing in; anything else is "/". */
export function safeNext(value) {
  const pages = ["/", "/jobs", "/notifications", "/settings"];
  return typeof value === "string" && pages.includes(value) ? value : "/";
}

function field(id, label, attributes) {
  return [h("label", { for: id }, label), h("input", { id, name: id, required: true, ...attributes })];
}

export function signInPage(navigate, query) {
  const next = safeNext(query.get("next"));
  const error = h("p", { id: "signin-error", class: "error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", id: "signin-submit" }, "Sign in");
  const form = h(
    "form",
    { id: "signin-form", class: "card narrow" },
    query.get("deleted") ? h("p", { class: "notice", role: "status" }, "Your account and everything in it were deleted.") : null,
    field("signin-email", "Email", { type: "email", autocomplete: "username", maxlength: "254" }),
    field("signin-password", "Password", { type: "password", autocomplete: "current-password", maxlength: "128" }),
    error,
    submit,
    h("p", {}, "New here? ", h("a", { href: "/register" + (next !== "/" ? "?next=" + encodeURIComponent(next) : ""), "data-link": true, id: "to-register" }, "Create an account")),
  );
  const describe = (failure) => (failure.status === 401 ? "That email and password do not match an account." : failure.message);
  onSubmit(form, { button: submit, error, describe }, async () => {
    await signIn(form.querySelector("#signin-email").value.trim(), form.querySelector("#signin-password").value);
    navigate(next);
  });
  return {
    element: h("section", { class: "page", "aria-labelledby": "signin-title" }, h("h1", { id: "signin-title" }, "Sign in"), form),
    title: "Sign in",
    focus: "#signin-email",
  };
}

export function registerPage(navigate, query) {
  const next = safeNext(query.get("next"));
  const error = h("p", { id: "register-error", class: "error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", id: "register-submit" }, "Create account");
  const form = h(
    "form",
    { id: "register-form", class: "card narrow" },
    field("register-email", "Email", { type: "email", autocomplete: "username", maxlength: "254" }),
    field("register-password", "Password (8 to 128 characters)", { type: "password", autocomplete: "new-password", minlength: "8", maxlength: "128" }),
    field("register-confirm", "Password again", { type: "password", autocomplete: "new-password", minlength: "8", maxlength: "128" }),
    error,
    submit,
    h("p", {}, "Have an account? ", h("a", { href: "/signin" + (next !== "/" ? "?next=" + encodeURIComponent(next) : ""), "data-link": true, id: "to-signin" }, "Sign in")),
  );
  onSubmit(form, { button: submit, error }, async () => {
    const email = form.querySelector("#register-email").value.trim();
    const password = form.querySelector("#register-password").value;
    if (password !== form.querySelector("#register-confirm").value) {
      throw new Error("The two passwords are not the same.");
    }
    await register(email, password);
    await signIn(email, password);
    navigate(next);
  });
  return {
    element: h("section", { class: "page", "aria-labelledby": "register-title" }, h("h1", { id: "register-title" }, "Create an account"), form),
    title: "Create an account",
    focus: "#register-email",
  };
}
