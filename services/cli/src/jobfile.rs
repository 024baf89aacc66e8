//! Job files: `terrafill submit JOB.toml [FLAGS]` (also `fill`, `retry` and `train`).
//!
//! A job file is a TOML table whose keys are the command's own flags (`ensemble = 4` is
//! `--ensemble 4`, `members = true` is `--members`) plus its positional arguments by name
//! (`input` and `output`; `scene` for `train`). The file is expanded into those arguments before
//! the command line is parsed, so a job file takes exactly the settings, defaults and checks of
//! the flags. Flags given on the command line after the file override the file's.
//!
//! String values are templates: `{date}` is the run's date as `YYYY-MM-DD` and `{date:FORMAT}`
//! formats it with strftime's codes (`{date:%Y/%m/%d}`); `{{` and `}}` are literal braces. The
//! date comes from `--date` (`YYYY-MM-DD`, `today`, `yesterday` or `today-N`, in UTC) and is
//! today's date in UTC without it, so a nightly schedule can run the same file every night.
//! Since the default job id is derived from the expanded arguments, each date is its own job and
//! re-running a date resumes (or, when it is complete, returns at once).

use std::ffi::OsString;

use anyhow::{bail, Context};
use chrono::NaiveDate;

/// The subcommands that take a job file, and their positional arguments in order.
pub const COMMANDS: [(&str, &[&str]); 4] = [
    ("fill", &["input", "output"]),
    ("submit", &["input", "output"]),
    ("retry", &["input", "output"]),
    ("train", &["scene"]),
];

/// Global flags that take a value (the others take none).
const GLOBAL_WITH_VALUE: [&str; 1] = ["--config"];

/// Flags of the job-file commands that a job file cannot set: the date is the run's.
const RUN_KEYS: [&str; 1] = ["date"];

/// Keys a job file may not hold: the broker URL carries credentials, which come from the
/// environment only.
const SECRET_KEYS: [&str; 1] = ["broker"];

/// `argv` with a job file, if the command names one right after its subcommand, replaced by the
/// arguments it holds; otherwise `argv` unchanged. `flags` are the subcommand's long flag names,
/// for checking the file's keys.
///
/// # Errors
/// A message naming the file (and the key) at fault: unreadable or malformed TOML, an unknown
/// or secret key, a value that is not a string, number, boolean or list of them, a bad template
/// or a bad `--date`.
pub fn expand(
    argv: Vec<OsString>,
    flags: &dyn Fn(&str) -> Option<Vec<String>>,
) -> anyhow::Result<Vec<OsString>> {
    let Some((sub, at)) = subcommand(&argv) else {
        return Ok(argv);
    };
    let Some(&(_, positional)) = COMMANDS.iter().find(|(name, _)| *name == sub) else {
        return Ok(argv);
    };
    let file = match argv.get(at + 1).and_then(|a| a.to_str()) {
        Some(f) if f.ends_with(".toml") && !f.starts_with('-') => f.to_owned(),
        _ => return Ok(argv),
    };
    let date = run_date(date_flag(&argv).as_deref(), chrono::Utc::now().date_naive())?;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading job file {file}"))?;
    let known = flags(&sub).unwrap_or_default();
    let args =
        job_args(&text, positional, &known, date).with_context(|| format!("job file {file}"))?;
    let mut out = argv[..=at].to_vec();
    out.extend(args.into_iter().map(OsString::from));
    out.extend(argv[at + 2..].iter().cloned());
    Ok(out)
}

/// Whether `argv` holds a `--date` (which only job files use) without a job file after its
/// subcommand.
pub fn stray_date(argv: &[OsString]) -> bool {
    let file = subcommand(argv)
        .and_then(|(_, at)| argv.get(at + 1))
        .and_then(|a| a.to_str())
        .is_some_and(|f| f.ends_with(".toml"));
    date_flag(argv).is_some() && !file
}

/// The subcommand and its index in `argv`, skipping the global flags before it.
fn subcommand(argv: &[OsString]) -> Option<(String, usize)> {
    let mut i = 1;
    while let Some(arg) = argv.get(i).and_then(|a| a.to_str()) {
        if !arg.starts_with('-') {
            return Some((arg.to_owned(), i));
        }
        i += if GLOBAL_WITH_VALUE.contains(&arg) {
            2
        } else {
            1
        };
    }
    None
}

/// The value of `--date` anywhere in `argv`.
fn date_flag(argv: &[OsString]) -> Option<String> {
    let args: Vec<&str> = argv.iter().filter_map(|a| a.to_str()).collect();
    args.iter().enumerate().find_map(|(i, a)| match *a {
        "--date" => args.get(i + 1).map(|v| (*v).to_owned()),
        _ => a.strip_prefix("--date=").map(str::to_owned),
    })
}

/// The date `--date` names (`YYYY-MM-DD`, `today`, `yesterday`, `today-N`), `today` without it.
pub fn run_date(flag: Option<&str>, today: NaiveDate) -> anyhow::Result<NaiveDate> {
    let days_back = match flag {
        None | Some("today") => 0,
        Some("yesterday") => 1,
        Some(s) if s.starts_with("today-") => s["today-".len()..]
            .parse::<u32>()
            .with_context(|| format!("--date {s}: expected today-N with N a number of days"))?,
        Some(s) => {
            return NaiveDate::parse_from_str(s, "%Y-%m-%d").with_context(|| {
                format!("--date {s}: expected YYYY-MM-DD, today, yesterday or today-N")
            })
        }
    };
    today
        .checked_sub_days(chrono::Days::new(u64::from(days_back)))
        .with_context(|| format!("--date today-{days_back} is before the calendar's start"))
}

/// The command-line arguments a job file's `text` stands for: its positional values in order,
/// then `--flag=value` for every other key (in key order: no flag depends on another's place).
fn job_args(
    text: &str,
    positional: &[&str],
    known: &[String],
    date: NaiveDate,
) -> anyhow::Result<Vec<String>> {
    let table: toml::Table = text.parse().context("not valid TOML")?;
    let mut args = Vec::new();
    for name in positional {
        let value = table
            .get(*name)
            .with_context(|| format!("missing `{name}`"))?;
        args.push(scalar(name, value, date)?);
    }
    for (key, value) in &table {
        if positional.contains(&key.as_str()) {
            continue;
        }
        let flag = key.replace('_', "-");
        if SECRET_KEYS.contains(&flag.as_str()) {
            bail!("`{key}` does not belong in a job file (it holds credentials): set TERRAFILL_BROKER or pass --broker");
        }
        if RUN_KEYS.contains(&flag.as_str()) {
            bail!("`{key}` is the run's, not the job's: pass --{flag} on the command line");
        }
        if !known.contains(&flag) {
            bail!(
                "unknown key `{key}`; the keys are {} and the flags: {}",
                positional.join(", "),
                known
                    .iter()
                    .filter(|k| !RUN_KEYS.contains(&k.as_str()))
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        match value {
            toml::Value::Boolean(true) => args.push(format!("--{flag}")),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                let items: anyhow::Result<Vec<String>> =
                    items.iter().map(|v| scalar(key, v, date)).collect();
                args.push(format!("--{flag}={}", items?.join(",")));
            }
            other => args.push(format!("--{flag}={}", scalar(key, other, date)?)),
        }
    }
    Ok(args)
}

/// A string (rendered as a template), number or boolean as text.
fn scalar(key: &str, value: &toml::Value, date: NaiveDate) -> anyhow::Result<String> {
    match value {
        toml::Value::String(s) => render(s, date).with_context(|| format!("`{key}`")),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => bail!("`{key}` must be a string, a number, a boolean or a list of them"),
    }
}

/// `template` with `{date}` and `{date:FORMAT}` replaced by `date`.
pub fn render(template: &str, date: NaiveDate) -> anyhow::Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("{{").or_else(|| tail.strip_prefix("}}")) {
            out.push_str(&tail[..1]);
            rest = t;
            continue;
        }
        let end = match tail.find('}') {
            Some(end) if tail.starts_with('{') => end,
            _ => bail!("unmatched brace in {template:?} (write {{{{ or }}}} for a literal one)"),
        };
        let field = &tail[1..end];
        let format = match field.split_once(':') {
            Some(("date", f)) => f,
            None if field == "date" => "%Y-%m-%d",
            _ => bail!("unknown placeholder {{{field}}} in {template:?}: the placeholders are {{date}} and {{date:FORMAT}}"),
        };
        let items: Vec<_> = chrono::format::StrftimeItems::new(format).collect();
        if items.contains(&chrono::format::Item::Error) {
            bail!(
                "bad date format {format:?} in {template:?} (strftime codes such as %Y %m %d %j)"
            );
        }
        out.push_str(&date.format_with_items(items.into_iter()).to_string());
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn templates_render_dates_and_literal_braces() -> anyhow::Result<()> {
        let d = day("2026-07-04");
        assert_eq!(
            render("s3://b/{date}/x.zarr", d)?,
            "s3://b/2026-07-04/x.zarr"
        );
        assert_eq!(render("{date:%Y/%m/%d}-{date:%j}", d)?, "2026/07/04-185");
        assert_eq!(render("{{date}} {date:%Y}", d)?, "{date} 2026");
        assert_eq!(render("plain", d)?, "plain");
        for bad in ["{day}", "{date", "x}y", "{date:%Q}"] {
            assert!(render(bad, d).is_err(), "{bad} rendered");
        }
        Ok(())
    }

    #[test]
    fn dates_by_name_offset_or_calendar() -> anyhow::Result<()> {
        let today = day("2026-03-01");
        assert_eq!(run_date(None, today)?, today);
        assert_eq!(run_date(Some("yesterday"), today)?, day("2026-02-28"));
        assert_eq!(run_date(Some("today-30"), today)?, day("2026-01-30"));
        assert_eq!(run_date(Some("2025-12-31"), today)?, day("2025-12-31"));
        for bad in ["2026-13-01", "tomorrow", "today-x", "01/02/2026"] {
            let e = run_date(Some(bad), today).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
        Ok(())
    }

    #[test]
    fn a_job_file_becomes_the_commands_arguments() -> anyhow::Result<()> {
        let known: Vec<String> = [
            "method",
            "ensemble",
            "members",
            "eta",
            "job-id",
            "max-distance",
        ]
        .map(String::from)
        .to_vec();
        let text = r#"
            input = "in/{date}.zarr"
            output = "out/{date:%Y%m%d}.zarr"
            method = "diffusion"
            ensemble = 8
            members = true
            eta = 0.5
            job_id = "nightly-{date}"
            max_distance = 40
        "#;
        let args = job_args(text, &["input", "output"], &known, day("2026-07-04"))?;
        let expected = [
            "in/2026-07-04.zarr",
            "out/20260704.zarr",
            "--ensemble=8",
            "--eta=0.5",
            "--job-id=nightly-2026-07-04",
            "--max-distance=40",
            "--members",
            "--method=diffusion",
        ];
        assert_eq!(args, expected);
        Ok(())
    }

    #[test]
    fn bad_job_files_name_the_key() {
        let known = vec!["method".to_owned()];
        let d = day("2026-07-04");
        let cases = [
            ("input = 'a'\noutput = 'b'\nmethd = 'idw'", "methd"),
            ("input = 'a'", "output"),
            (
                "input = 'a'\noutput = 'b'\nbroker = 'amqp://u:p@h'",
                "broker",
            ),
            ("input = 'a'\noutput = 'b'\ndate = '2026-01-01'", "--date"),
            ("input = 'a'\noutput = 'b'\nmethod = { x = 1 }", "method"),
            ("input = 'a'\noutput = '{when}'", "when"),
            ("input = [", "TOML"),
        ];
        for (text, needle) in cases {
            let e = format!(
                "{:#}",
                job_args(text, &["input", "output"], &known, d).unwrap_err()
            );
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn only_a_toml_right_after_the_subcommand_is_expanded() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("job.toml");
        std::fs::write(
            &file,
            "input = 'i.zarr'\noutput = 'o-{date}.zarr'\nseed = 3\n",
        )?;
        let f = file.to_str().unwrap();
        let flags = |_: &str| Some(vec!["seed".to_owned(), "broker".to_owned()]);
        let argv = os(&[
            "terrafill",
            "--log-json",
            "submit",
            f,
            "--seed",
            "4",
            "--date",
            "2026-01-02",
        ]);
        let out = expand(argv, &flags)?;
        assert_eq!(
            out,
            os(&[
                "terrafill",
                "--log-json",
                "submit",
                "i.zarr",
                "o-2026-01-02.zarr",
                "--seed=3",
                "--seed",
                "4",
                "--date",
                "2026-01-02",
            ])
        );
        let plain = os(&["terrafill", "fill", "a.zarr", "b.zarr"]);
        assert_eq!(expand(plain.clone(), &flags)?, plain);
        assert!(!stray_date(&plain));
        assert!(stray_date(&os(&[
            "terrafill",
            "fill",
            "a.zarr",
            "b",
            "--date",
            "today"
        ])));
        Ok(())
    }
}
