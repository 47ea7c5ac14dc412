//! `fiberlb cert ...`: TLS certificates (CertificateService). Private keys go up, never
//! come back.

use std::path::{Path, PathBuf};

use fiberlb_proto::v1 as pv;

use crate::cli::args::{collect, Paging};
use crate::cli::conn::Api;
use crate::cli::error::CliError;
use crate::cli::output::{print_done, print_list, print_object, Column, Format};

/// Certificate commands.
#[derive(Debug, clap::Subcommand)]
pub enum CertCmd {
    /// Upload a certificate chain and its private key (or a CA bundle without a key).
    #[command(
        after_help = "Example:\n  fiberlb cert create --name web-cert --org acme --cert-file fullchain.pem --key-file privkey.pem"
    )]
    Create {
        /// Name, unique within the org/project.
        #[arg(long)]
        name: String,
        /// Owning organization.
        #[arg(long)]
        org: String,
        /// Owning project.
        #[arg(long)]
        project: Option<String>,
        /// PEM file: the leaf first, then intermediates (or a CA bundle).
        #[arg(long, value_name = "PEM_FILE")]
        cert_file: PathBuf,
        /// PEM file with the private key (leave out for a CA bundle).
        #[arg(long, value_name = "PEM_FILE")]
        key_file: Option<PathBuf>,
    },
    /// Show a certificate.
    Get {
        /// Certificate id.
        id: String,
    },
    /// List the certificates of an org.
    List {
        /// Organization.
        #[arg(long)]
        org: String,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// Only names starting with this.
        #[arg(long)]
        name_filter: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Replace a certificate's chain and key (rotation).
    Update {
        /// Certificate id.
        id: String,
        /// PEM file with the new chain.
        #[arg(long, value_name = "PEM_FILE")]
        cert_file: PathBuf,
        /// PEM file with the new private key.
        #[arg(long, value_name = "PEM_FILE")]
        key_file: Option<PathBuf>,
        /// Fail unless the certificate is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Delete a certificate.
    Delete {
        /// Certificate id.
        id: String,
        /// Fail unless the certificate is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
}

/// Columns of `cert list`.
pub const COLUMNS: &[Column] = &[
    Column::Field("ID", "/id"),
    Column::Field("NAME", "/name"),
    Column::Field("PROJECT", "/project_id"),
    Column::Field("SUBJECTS", "/subject_names"),
    Column::Field("NOT_AFTER", "/not_after"),
    Column::Field("HAS_KEY", "/has_private_key"),
];

fn read_pem(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))
}

fn read_key(path: &Option<PathBuf>) -> Result<String, CliError> {
    path.as_deref()
        .map(read_pem)
        .transpose()
        .map(Option::unwrap_or_default)
}

/// Runs one certificate command.
pub async fn run(api: Api, cmd: CertCmd, fmt: Format) -> Result<(), CliError> {
    let mut c = api.cert.clone();
    match cmd {
        CertCmd::Create {
            name,
            org,
            project,
            cert_file,
            key_file,
        } => {
            let req = pv::CreateCertificateRequest {
                name,
                org_id: org,
                project_id: project,
                certificate_pem: read_pem(&cert_file)?,
                private_key_pem: read_key(&key_file)?,
            };
            print_object(fmt, &c.create_certificate(req).await?.into_inner())
        }
        CertCmd::Get { id } => print_object(
            fmt,
            &c.get_certificate(pv::GetCertificateRequest { certificate_id: id })
                .await?
                .into_inner(),
        ),
        CertCmd::List {
            org,
            project,
            name_filter,
            paging,
        } => {
            let (certificates, next_page_token, total_count) = collect(&paging, |page_token| {
                let mut c = c.clone();
                let req = pv::ListCertificatesRequest {
                    org_id: org.clone(),
                    project_id: project.clone(),
                    name_filter: name_filter.clone(),
                    limit: paging.limit,
                    page_token,
                };
                async move {
                    let r = c.list_certificates(req).await?.into_inner();
                    Ok((r.certificates, r.next_page_token, r.total_count))
                }
            })
            .await?;
            let resp = pv::ListCertificatesResponse {
                certificates,
                next_page_token,
                total_count,
            };
            print_list(fmt, &resp, "certificates", COLUMNS)
        }
        CertCmd::Update {
            id,
            cert_file,
            key_file,
            revision,
        } => {
            let req = pv::UpdateCertificateRequest {
                certificate_id: id,
                certificate_pem: read_pem(&cert_file)?,
                private_key_pem: read_key(&key_file)?,
                revision,
            };
            print_object(fmt, &c.update_certificate(req).await?.into_inner())
        }
        CertCmd::Delete { id, revision } => {
            let r = c
                .delete_certificate(pv::DeleteCertificateRequest {
                    certificate_id: id,
                    revision,
                })
                .await?
                .into_inner();
            print_done(
                fmt,
                &format!("deleted certificate {}", r.certificate_id),
                &r,
            )
        }
    }
}
