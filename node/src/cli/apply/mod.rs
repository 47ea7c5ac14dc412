//! `fiberlb apply`, `import` and `export`: declarative configuration through the API.
//!
//! apply = read the document → read the current state of the load balancers it names →
//! `plan` (pure diff) → execute the steps in order, printing one line per object and a
//! summary. export = read every load balancer of an org → the same document types, sorted
//! by name, with ids, revisions and timestamps left out.

pub mod current;
mod exec;
mod fetch;
mod merge;
pub mod plan;
pub(crate) mod requests;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::io::{Read, Write};

use current::CurrentLb;
use plan::{plan, summary, Report};

use super::conn::Api;
use super::document::{Document, LoadBalancerDoc};
use super::error::CliError;
use super::output::Format;

/// Options of `apply` and `import`.
#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    /// The document (YAML or JSON); `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: String,
    /// Also delete the listeners, pools and backends of these load balancers that the
    /// document does not name.
    #[arg(long)]
    pub prune: bool,
    /// Print what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Options of `export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Organization whose load balancers to export.
    #[arg(long)]
    pub org: String,
    /// Only this project's load balancers.
    #[arg(long)]
    pub project: Option<String>,
    /// Write the document to this file instead of standard output (`-` = stdout).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<String>,
}

/// Makes the server match the document and prints what was done.
pub async fn apply(api: Api, args: &ApplyArgs) -> Result<(), CliError> {
    let text = read_input(&args.file)?;
    let doc = Document::parse(&text)?;
    let mut current = Vec::with_capacity(doc.load_balancers.len());
    let mut certs = Vec::with_capacity(doc.load_balancers.len());
    let mut cert_names = fetch::CertNames::default();
    for lb in &doc.load_balancers {
        certs.push(fetch::resolve_certs(&api, lb).await?);
        let found = fetch::find_lb(&api, &lb.org_id, lb.project_id.as_deref(), &lb.name).await?;
        current.push(match found {
            Some(pb) => Some(fetch::load_current(&api, &pb, &mut cert_names).await?),
            None => None,
        });
    }
    let actions = plan(&doc, &current, args.prune)?;
    let mut done: Vec<Report> = Vec::new();
    if args.dry_run {
        for r in actions.iter().filter_map(|a| a.report.as_ref()) {
            println!("{r}");
            done.push(r.clone());
        }
        println!("{} (dry run: nothing was changed)", summary(&done));
        return Ok(());
    }
    let mut executor = exec::Executor::new(api, &doc, &current, certs);
    for action in &actions {
        executor.run(&action.op).await?;
        if let Some(r) = &action.report {
            println!("{r}");
            done.push(r.clone());
        }
    }
    println!("{}", summary(&done));
    Ok(())
}

/// Writes the document describing every load balancer of the org (or project).
pub async fn export(api: Api, args: &ExportArgs, format: Format) -> Result<(), CliError> {
    let lbs = fetch::list_lbs(&api, &args.org, args.project.as_deref(), None).await?;
    let mut cert_names = fetch::CertNames::default();
    let mut docs = Vec::with_capacity(lbs.len());
    for lb in lbs.iter().filter(|lb| lb.org_id == args.org) {
        if args.project.is_some() && lb.project_id != args.project {
            continue;
        }
        docs.push(export_lb(
            &fetch::load_current(&api, lb, &mut cert_names).await?,
        ));
    }
    docs.sort_by(|a, b| (&a.name, &a.project_id).cmp(&(&b.name, &b.project_id)));
    let doc = Document {
        load_balancers: docs,
    };
    let text = match format {
        Format::Json => doc.to_json()?,
        Format::Table | Format::Yaml => doc.to_yaml()?,
    };
    match args.file.as_deref() {
        None | Some("-") => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|_| out.flush())
                .map_err(|e| CliError::io("stdout", e))
        }
        Some(path) => std::fs::write(path, text).map_err(|e| CliError::io(path, e)),
    }
}

/// A load balancer in export form: children sorted by name (rules in evaluation order,
/// by priority then name), empty values left out.
pub fn export_lb(cur: &CurrentLb) -> LoadBalancerDoc {
    let mut doc = cur.to_doc();
    doc.pools.sort_by(|a, b| a.name.cmp(&b.name));
    for p in &mut doc.pools {
        p.backends.sort_by(|a, b| a.name.cmp(&b.name));
    }
    doc.listeners.sort_by(|a, b| a.name.cmp(&b.name));
    for l in &mut doc.listeners {
        if let Some(rules) = &mut l.rules {
            rules.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
        }
    }
    doc.without_empty()
}

fn read_input(file: &str) -> Result<String, CliError> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::io("stdin", e))?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).map_err(|e| CliError::io(file, e))
    }
}
