//! `mp3conv presets`: a person's named sets of options (`/v1/presets`), applied to a
//! conversion with `mp3conv convert --preset NAME`.

use clap::Subcommand;
use mp3conv_contract::options::{Preset, PresetList, preset_name};
use serde_json::json;

use super::options::{OptionArgs, describe};
use super::{Client, Failure, Outcome, check, read};

// Parsed once per run: the size of the flags of `save` costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum PresetsCommand {
    /// Your presets, by name.
    List,
    /// Save the options given as flags under NAME (replacing a preset of that name).
    Save {
        /// 1-64 letters, digits, spaces, `-`, `_` or `.`.
        name: String,
        #[command(flatten)]
        options: OptionArgs,
    },
    /// One preset's options.
    Show { name: String },
    /// Delete a preset.
    #[command(alias = "rm")]
    Delete { name: String },
}

fn line(preset: &Preset) -> String {
    let options = describe(&preset.options);
    if options.is_empty() {
        format!("{}: (no options)", preset.name)
    } else {
        format!("{}: {options}", preset.name)
    }
}

impl Client {
    pub(super) async fn presets(&self, command: PresetsCommand) -> Outcome {
        let token = self.token()?;
        match command {
            PresetsCommand::List => {
                let response = self
                    .send(self.http.get(self.url("/v1/presets")).bearer_auth(&token))
                    .await?;
                let list: PresetList = read(check(response).await?).await?;
                self.print(&list, || {
                    if list.presets.is_empty() {
                        return "no presets yet: `mp3conv presets save NAME --normalize ...`"
                            .into();
                    }
                    list.presets.iter().map(line).collect::<Vec<_>>().join("\n")
                });
            }
            PresetsCommand::Save { name, options } => {
                let name = checked_name(&name)?;
                let options = options.options(None)?;
                let response = self
                    .send(
                        self.http
                            .put(self.preset_url(&name)?)
                            .bearer_auth(&token)
                            .json(&json!({ "options": options })),
                    )
                    .await?;
                let created = response.status().as_u16() == 201;
                let preset: Preset = read(check(response).await?).await?;
                self.print(&preset, || {
                    let verb = if created { "saved" } else { "replaced" };
                    format!("{verb} preset {}", line(&preset))
                });
            }
            PresetsCommand::Show { name } => {
                let name = checked_name(&name)?;
                let response = self
                    .send(self.http.get(self.preset_url(&name)?).bearer_auth(&token))
                    .await?;
                let preset: Preset = read(check(response).await?).await?;
                self.print(&preset, || line(&preset));
            }
            PresetsCommand::Delete { name } => {
                let name = checked_name(&name)?;
                let response = self
                    .send(
                        self.http
                            .delete(self.preset_url(&name)?)
                            .bearer_auth(&token),
                    )
                    .await?;
                check(response).await?;
                self.print(&json!({ "deleted": name }), || {
                    format!("deleted preset {name}")
                });
            }
        }
        Ok(())
    }

    /// `/v1/presets/{name}`, the name encoded as one path segment.
    fn preset_url(&self, name: &str) -> Result<reqwest::Url, Failure> {
        let mut url = reqwest::Url::parse(&self.url("/v1/presets"))
            .map_err(|err| Failure::Usage(format!("--server: {err}")))?;
        url.path_segments_mut()
            .map_err(|()| Failure::Usage("--server cannot take a path".into()))?
            .push(name);
        Ok(url)
    }
}

/// A preset's name as the server takes it, or a usage failure saying what is allowed.
fn checked_name(name: &str) -> Result<String, Failure> {
    preset_name(name).map_err(|err| Failure::Usage(format!("preset name `{name}`: {err}")))
}
