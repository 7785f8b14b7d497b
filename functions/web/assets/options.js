// The convert form's options: the quality, and behind an "Options" disclosure the clip,
// loudness, tags, cover, channels, sample rate, splitting by chapters and a saved preset.
// Only what the person set is sent: the rest keeps its default (or the preset's value). An
// error the API names a field for is shown next to that field.

import { ApiError, presets, savePreset } from "./api.js";
import { h, optionWords, replace, toast } from "./ui.js";

const BITRATES = [
  ["", "192 kbit/s (the default)"],
  ["128", "128 kbit/s (smaller)"],
  ["192", "192 kbit/s"],
  ["256", "256 kbit/s"],
  ["320", "320 kbit/s (best)"],
  ["v0", "Variable, best (V0)"],
  ["v2", "Variable, high (V2)"],
];
const NORMALIZE = [
  ["", "Off"],
  ["-16", "−16 LUFS (speech, podcasts)"],
  ["-14", "−14 LUFS (music)"],
  ["-23", "−23 LUFS (broadcast)"],
];
const COVER = [
  ["", "Automatic"],
  ["none", "No cover"],
];
const CHANNELS = [
  ["", "As the video (up to stereo)"],
  ["mono", "Mono"],
  ["stereo", "Stereo"],
];
const SAMPLE_RATES = [
  ["", "44.1 kHz"],
  ["48000", "48 kHz"],
];

function select(id, choices) {
  return h(
    "select",
    { id, name: id },
    choices.map(([value, label]) => h("option", { value }, label)),
  );
}

/**
 * The options controls. Answers `{ quality, element, fields, showError, clearErrors }`:
 * `quality` is the bitrate row (shown above the file picker), `element` the disclosure,
 * `fields()` the options set as `[[field, text], ...]`, `showError(error)` shows an API
 * error next to its field (answers whether it could), `clearErrors()` clears them all.
 */
export function optionsPanel() {
  // field -> { control, error, hint }
  const controls = new Map();

  /** A labelled control for `field`, with its error line (and a hint, if given). */
  function field(name, label, control, hint) {
    const error = h("p", { id: control.id + "-error", class: "error field-error", hidden: true });
    const hintLine = hint ? h("p", { id: control.id + "-hint", class: "muted field-hint" }, hint) : null;
    if (hintLine) control.setAttribute("aria-describedby", hintLine.id);
    controls.set(name, { control, error, hint: hintLine });
    control.addEventListener("input", () => clear(name));
    control.addEventListener("change", () => clear(name));
    const labelled = control.type === "checkbox"
      ? h("div", { class: "field check" }, control, h("label", { for: control.id }, label))
      : h("div", { class: "field" }, h("label", { for: control.id }, label), control);
    labelled.append(...[hintLine, error].filter(Boolean));
    return labelled;
  }

  const text = (id, attributes = {}) => h("input", { type: "text", id, name: id, autocomplete: "off", ...attributes });

  const bitrate = select("bitrate", BITRATES);
  const start = text("opt-start", { placeholder: "0:00", spellcheck: false });
  const end = text("opt-end", { placeholder: "the end", spellcheck: false });
  const normalize = select("opt-normalize", NORMALIZE);
  const title = text("opt-title", { maxlength: 256 });
  const artist = text("opt-artist", { maxlength: 256 });
  const album = text("opt-album", { maxlength: 256 });
  const year = text("opt-year", { inputmode: "numeric", maxlength: 4 });
  const comment = h("textarea", { id: "opt-comment", name: "opt-comment", rows: 2, maxlength: 1000 });
  const cover = select("opt-cover", COVER);
  const channels = select("opt-channels", CHANNELS);
  const sampleRate = select("opt-sample-rate", SAMPLE_RATES);
  const split = h("input", { type: "checkbox", id: "opt-split", name: "opt-split" });
  const preset = h("select", { id: "opt-preset", name: "opt-preset" }, h("option", { value: "" }, "No preset"));
  const presetSummary = h("p", { id: "opt-preset-summary", class: "muted", "aria-live": "polite" });
  const presetName = text("preset-name", { maxlength: 64 });
  const presetSave = h("button", { type: "button", id: "preset-save", class: "secondary" }, "Save these options as a preset");

  // Texts sent as typed (trimmed); empty means "not set".
  const texts = [
    ["start", start],
    ["end", end],
    ["title", title],
    ["artist", artist],
    ["album", album],
    ["year", year],
    ["comment", comment],
  ];
  const choices = [
    ["bitrate", bitrate],
    ["normalize", normalize],
    ["cover", cover],
    ["channels", channels],
    ["sample_rate", sampleRate],
  ];

  /** The options set, without the preset: `[[field, text], ...]`. */
  function own() {
    const set = [];
    for (const [name, control] of [...choices, ...texts]) {
      const value = control.value.trim();
      if (value !== "") set.push([name, value]);
    }
    if (split.checked) set.push(["split", "chapters"]);
    return set;
  }

  let known = [];
  function describePreset() {
    const chosen = known.find((p) => p.name === preset.value);
    const words = chosen ? optionWords(chosen.options) : [];
    replace(presetSummary, chosen ? (words.length ? "This preset sets " + words.join(", ") + ". What you set here wins." : "This preset sets nothing.") : "");
  }
  preset.addEventListener("change", describePreset);

  async function loadPresets(selected = preset.value) {
    try {
      known = await presets();
    } catch (error) {
      toast(error.message);
      return;
    }
    replace(
      preset,
      h("option", { value: "" }, "No preset"),
      known.map((p) => h("option", { value: p.name, selected: p.name === selected }, p.name)),
    );
    describePreset();
  }

  presetSave.addEventListener("click", async () => {
    clearErrors();
    const name = presetName.value.trim();
    if (!name) {
      show("preset-name", "Give the preset a name.");
      return;
    }
    presetSave.disabled = true;
    try {
      const saved = await savePreset(name, Object.fromEntries(own()));
      await loadPresets(saved && saved.name ? saved.name : name);
      presetName.value = "";
      toast("Saved the preset “" + name + "”.");
    } catch (error) {
      // The name's own errors name `preset` (or `name`): that is the name field here.
      const named = error instanceof ApiError && (error.field === "preset" || error.field === "name");
      if (!(named ? show("preset-name", error.message) : showError(error))) show("preset-name", error.message);
    } finally {
      presetSave.disabled = false;
    }
  });

  /** Shows `message` next to the control of `name`; answers whether there is one. */
  function show(name, message) {
    const shown = controls.get(name);
    if (!shown) return false;
    const { control, error, hint } = shown;
    replace(error, message);
    error.hidden = false;
    error.setAttribute("role", "alert");
    control.setAttribute("aria-invalid", "true");
    control.setAttribute("aria-describedby", [hint && hint.id, error.id].filter(Boolean).join(" "));
    if (element.contains(control)) element.open = true;
    control.focus();
    return true;
  }

  function clear(name) {
    const shown = controls.get(name);
    if (!shown || shown.error.hidden) return;
    const { control, error, hint } = shown;
    error.hidden = true;
    error.removeAttribute("role");
    control.removeAttribute("aria-invalid");
    if (hint) control.setAttribute("aria-describedby", hint.id);
    else control.removeAttribute("aria-describedby");
  }

  /** Shows an API error next to the field it names; answers whether it could. */
  function showError(error) {
    return error instanceof ApiError && typeof error.field === "string" && show(error.field, error.message);
  }

  function clearErrors() {
    for (const name of controls.keys()) clear(name);
  }

  const quality = field("bitrate", "Quality", bitrate);
  const element = h(
    "details",
    { id: "options", class: "options" },
    h("summary", {}, "Options"),
    h("p", { class: "muted" }, "Leave a field empty to keep its default. Options apply to the files and links you convert next."),
    field("preset", "Preset", preset),
    presetSummary,
    h(
      "fieldset",
      {},
      h("legend", {}, "Clip"),
      h(
        "div",
        { class: "options-grid" },
        field("start", "Start", start, "Seconds (90.5) or minutes and seconds (1:30)."),
        field("end", "End", end, "Leave empty for the end of the video."),
      ),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "Sound"),
      h(
        "div",
        { class: "options-grid" },
        field("normalize", "Loudness", normalize),
        field("channels", "Channels", channels),
        field("sample_rate", "Sample rate", sampleRate),
      ),
      field("split", "Split by chapters: one MP3 per chapter of the video", split),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "Tags and cover"),
      h(
        "div",
        { class: "options-grid" },
        field("title", "Title", title, "Empty: the video's title or name."),
        field("artist", "Artist", artist),
        field("album", "Album", album),
        field("year", "Year", year),
        field("cover", "Cover picture", cover, "Automatic: the video's own picture, else a frame of it."),
      ),
      field("comment", "Comment", comment),
    ),
    h(
      "div",
      { class: "preset-save" },
      field("preset-name", "Save as a preset named", presetName),
      presetSave,
    ),
  );
  loadPresets();

  return {
    quality,
    element,
    fields() {
      const set = own();
      if (preset.value) set.push(["preset", preset.value]);
      return set;
    },
    showError,
    clearErrors,
  };
}
