//! `fiberlb token ...`: access credentials (AccessService).

use fiberlb_proto::v1 as pv;

use crate::cli::args::{collect, Paging};
use crate::cli::conn::Api;
use crate::cli::enums::CredentialKind;
use crate::cli::error::CliError;
use crate::cli::output::{print_list, print_object, Column, Format};

/// Token commands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCmd {
    /// Create a credential; its secret is printed once and never again.
    #[command(
        after_help = "Example:\n  fiberlb token create --name ci --principal ci-bot --org acme --action 'fiberlb:pools:*' --action fiberlb:backends:update"
    )]
    Create {
        /// Name.
        #[arg(long)]
        name: String,
        /// Principal the credential acts as.
        #[arg(long)]
        principal: String,
        /// Organization it is limited to (empty: system scope, platform operators only).
        #[arg(long, default_value = "")]
        org: String,
        /// Project it is limited to.
        #[arg(long)]
        project: Option<String>,
        /// Allowed action patterns, e.g. fiberlb:pools:* (comma-separated or repeated).
        #[arg(long = "action", value_name = "PATTERN", value_delimiter = ',')]
        actions: Vec<String>,
        /// How the secret is sent.
        #[arg(long, value_enum)]
        kind: Option<CredentialKind>,
        /// Lifetime, seconds (default: no expiry).
        #[arg(long)]
        ttl_seconds: Option<u64>,
    },
    /// List credentials (never their secrets).
    List {
        /// Only this organization's.
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Revoke a credential.
    Revoke {
        /// Token id.
        id: String,
    },
    /// Show the credential this command authenticates with.
    Whoami,
}

/// Columns of `token list`.
pub const COLUMNS: &[Column] = &[
    Column::Field("ID", "/id"),
    Column::Field("NAME", "/name"),
    Column::Field("PRINCIPAL", "/principal"),
    Column::Field("ORG", "/org_id"),
    Column::Field("PROJECT", "/project_id"),
    Column::Field("KIND", "/kind"),
    Column::Field("ACTIONS", "/actions"),
    Column::Field("EXPIRES", "/expires_at"),
    Column::Field("REVOKED", "/revoked"),
];

/// Runs one token command.
pub async fn run(api: Api, cmd: TokenCmd, fmt: Format) -> Result<(), CliError> {
    let mut c = api.access.clone();
    match cmd {
        TokenCmd::Create {
            name,
            principal,
            org,
            project,
            actions,
            kind,
            ttl_seconds,
        } => {
            let req = pv::CreateTokenRequest {
                name,
                principal,
                org_id: org,
                project_id: project,
                actions,
                kind: kind.map_or(0, |k| k.to_proto()),
                ttl_seconds,
            };
            let r = c.create_token(req).await?.into_inner();
            if fmt == Format::Table {
                if let Some(t) = &r.token {
                    print_object(fmt, t)?;
                }
                println!("secret: {}", r.secret);
                eprintln!("(the secret is shown only now: store it safely)");
                Ok(())
            } else {
                print_object(fmt, &r)
            }
        }
        TokenCmd::List { org, paging } => {
            let (tokens, next_page_token, total_count) = collect(&paging, |page_token| {
                let mut c = c.clone();
                let req = pv::ListTokensRequest {
                    org_id: org.clone(),
                    limit: paging.limit,
                    page_token,
                };
                async move {
                    let r = c.list_tokens(req).await?.into_inner();
                    Ok((r.tokens, r.next_page_token, r.total_count))
                }
            })
            .await?;
            print_list(
                fmt,
                &pv::ListTokensResponse {
                    tokens,
                    next_page_token,
                    total_count,
                },
                "tokens",
                COLUMNS,
            )
        }
        TokenCmd::Revoke { id } => print_object(
            fmt,
            &c.revoke_token(pv::RevokeTokenRequest { token_id: id })
                .await?
                .into_inner(),
        ),
        TokenCmd::Whoami => {
            print_object(fmt, &c.who_am_i(pv::WhoAmIRequest {}).await?.into_inner())
        }
    }
}
