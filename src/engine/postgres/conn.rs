//! Where a PostgreSQL server is and how to log in, for lifeboat's own connection and for the
//! libpq tools it runs.
//!
//! The tools get every setting through `PG*` environment variables, never on their command
//! line, so a password never shows in `ps`. Passwords are never read from lifeboat's files:
//! they come from the variable a source names in `password_env`, from `PGPASSWORD`, or from
//! the `.pgpass` file (libpq's own lookup, mirrored here for lifeboat's connection).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use tokio_postgres::config::SslMode;

use super::tls::Verify;
use crate::error::{Error, Result};

/// Connection settings of one server and database. Debug output and Display never show the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct Conn {
    /// Host names, addresses, or Unix socket directories.
    pub hosts: Vec<String>,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    /// libpq TLS options as environment variables (`PGSSLMODE`, `PGSSLROOTCERT`, ...).
    ssl: Vec<(String, String)>,
    password: Option<String>,
}

/// What a config gives to build a [`Conn`] from.
#[derive(Debug, Clone, Default)]
pub struct ConnSpec<'a> {
    pub url: Option<&'a str>,
    pub host: Option<&'a str>,
    pub port: Option<u16>,
    pub user: Option<&'a str>,
    pub database: Option<&'a str>,
    pub sslmode: Option<&'a str>,
    pub password_env: Option<&'a str>,
}

const SSL_KEYS: [(&str, &str); 5] = [
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("sslcrl", "PGSSLCRL"),
];

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("hosts", &self.hosts)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("ssl", &self.ssl)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "database {} on {}:{} as {}",
            self.dbname,
            self.hosts.join(","),
            self.port,
            self.user
        )
    }
}

impl Serialize for Conn {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Whether a URL or conninfo names a database.
pub fn names_database(url: &str) -> bool {
    let (rest, _) = split_ssl(url);
    tokio_postgres::Config::from_str(&rest).is_ok_and(|c| c.get_dbname().is_some())
}

/// Checks a URL or conninfo from a config file: it must parse and must not carry a password.
pub fn check_url(url: &str) -> std::result::Result<(), String> {
    let (rest, _) = split_ssl(url);
    let parsed = tokio_postgres::Config::from_str(&rest)
        .map_err(|e| format!("cannot read the PostgreSQL URL: {e}"))?;
    if parsed.get_password().is_some() {
        return Err(
            "the PostgreSQL URL holds a password; put it in the environment variable named by `password_env`, PGPASSWORD or ~/.pgpass instead".into(),
        );
    }
    Ok(())
}

impl Conn {
    /// Settings from a config, completed from libpq's environment defaults.
    pub fn new(spec: &ConnSpec) -> Result<Conn> {
        let invalid = |m: String| Error::Invalid(m);
        let mut ssl = Vec::new();
        let mut parsed = tokio_postgres::Config::new();
        if let Some(url) = spec.url {
            let (rest, found) = split_ssl(url);
            ssl = found;
            parsed = tokio_postgres::Config::from_str(&rest)
                .map_err(|e| invalid(format!("cannot read the PostgreSQL URL: {e}")))?;
        }
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut hosts: Vec<String> = parsed
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(s) => s.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        if let Some(h) = spec.host {
            hosts = h.split(',').map(str::to_owned).collect();
        }
        if hosts.is_empty() {
            hosts = match env("PGHOST") {
                Some(h) => h.split(',').map(str::to_owned).collect(),
                None if Path::new("/var/run/postgresql").is_dir() => {
                    vec!["/var/run/postgresql".into()]
                }
                None => vec!["localhost".into()],
            };
        }
        let port = match (spec.port, parsed.get_ports().first(), env("PGPORT")) {
            (Some(p), _, _) | (None, Some(&p), _) => p,
            (None, None, Some(p)) => p
                .parse()
                .map_err(|_| invalid(format!("PGPORT={p:?} is not a port number")))?,
            (None, None, None) => 5432,
        };
        let user = spec
            .user
            .map(str::to_owned)
            .or_else(|| parsed.get_user().map(str::to_owned))
            .or_else(|| env("PGUSER"))
            .or_else(|| env("USER"))
            .unwrap_or_else(|| "postgres".into());
        let dbname = spec
            .database
            .map(str::to_owned)
            .or_else(|| parsed.get_dbname().map(str::to_owned))
            .or_else(|| env("PGDATABASE"))
            .unwrap_or_else(|| user.clone());
        if let Some(mode) = spec.sslmode {
            ssl.retain(|(k, _)| k != "PGSSLMODE");
            ssl.push(("PGSSLMODE".into(), mode.to_owned()));
        }
        let password = match spec.password_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                invalid(format!(
                    "the environment variable {var} (named for the password) is not set"
                ))
            })?),
            None => None,
        };
        Ok(Conn {
            hosts,
            port,
            user,
            dbname,
            ssl,
            password,
        })
    }

    /// The same server, another database.
    pub fn with_dbname(&self, dbname: &str) -> Conn {
        Conn {
            dbname: dbname.to_owned(),
            ..self.clone()
        }
    }

    /// The same server and database, logging in as `user` with `password`.
    pub fn with_login(&self, user: &str, password: &str) -> Conn {
        Conn {
            user: user.to_owned(),
            password: Some(password.to_owned()),
            ..self.clone()
        }
    }

    /// Whether both name the same server (and so the same set of databases).
    pub fn same_server(&self, other: &Conn) -> bool {
        self.hosts == other.hosts && self.port == other.port
    }

    /// Opens lifeboat's own connection; the connection task runs until the client is dropped.
    ///
    /// Names resolve in `pg_catalog` only: lifeboat reads restored databases, whose schemas
    /// anyone who wrote the dump controls, and an operator or function planted in `public`
    /// would otherwise be chosen over the built-in one and run with lifeboat's rights.
    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        self.open(Some("-c search_path=pg_catalog,pg_temp")).await
    }

    /// A connection that resolves names as psql would, for running a dump's own statements.
    /// Only for a login that owns nothing but the scratch database (see `role.rs`).
    pub async fn connect_for_dump(&self) -> Result<tokio_postgres::Client> {
        self.open(None).await
    }

    async fn open(&self, options: Option<&str>) -> Result<tokio_postgres::Client> {
        let mut config = tokio_postgres::Config::new();
        for h in &self.hosts {
            if h.starts_with('/') {
                config.host_path(h);
            } else {
                config.host(h);
            }
        }
        config
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("lifeboat")
            .connect_timeout(std::time::Duration::from_secs(30))
            // A server that vanishes mid-query is noticed in minutes, not after the
            // kernel's two-hour default.
            .keepalives_idle(std::time::Duration::from_secs(60))
            .keepalives_interval(std::time::Duration::from_secs(10))
            .keepalives_retries(6);
        if let Some(o) = options {
            config.options(o);
        }
        let (ssl_mode, verify, rootcert) = self.tls()?;
        config.ssl_mode(ssl_mode);
        if let Some(p) = self.password.clone().or_else(|| self.pgpass_password()) {
            config.password(p);
        }
        let failed = super::pg_error(format!("cannot connect to {self}"));
        let client = if ssl_mode == SslMode::Disable {
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(failed)?;
            tokio::spawn(drive(connection));
            client
        } else {
            let tls = super::tls::connector(verify, rootcert.as_deref())?;
            let (client, connection) = config.connect(tls).await.map_err(failed)?;
            tokio::spawn(drive(connection));
            client
        };
        Ok(client)
    }

    /// Asks the server to stop what the client `token` came from is running: dropping a
    /// query's future does not stop it on the server.
    pub async fn cancel_query(&self, token: &tokio_postgres::CancelToken) -> Result<()> {
        let (ssl_mode, verify, rootcert) = self.tls()?;
        let failed = super::pg_error(format!("cancel the query on {self}"));
        if ssl_mode == SslMode::Disable {
            token
                .cancel_query(tokio_postgres::NoTls)
                .await
                .map_err(failed)
        } else {
            let tls = super::tls::connector(verify, rootcert.as_deref())?;
            token.cancel_query(tls).await.map_err(failed)
        }
    }

    /// How lifeboat's own connections use TLS, following libpq's settings.
    fn tls(&self) -> Result<(SslMode, Verify, Option<String>)> {
        let setting = |var: &str| {
            self.ssl
                .iter()
                .find(|(k, _)| k == var)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(var).ok().filter(|v| !v.is_empty()))
        };
        let mode = setting("PGSSLMODE").unwrap_or_else(|| "prefer".into());
        // libpq never uses TLS on Unix sockets, whatever sslmode says.
        let socket_only = self.hosts.iter().all(|h| h.starts_with('/'));
        let (ssl_mode, verify) = match mode.as_str() {
            _ if socket_only => (SslMode::Disable, Verify::Nothing),
            "disable" => (SslMode::Disable, Verify::Nothing),
            "allow" | "prefer" => (SslMode::Prefer, Verify::Nothing),
            "require" => (SslMode::Require, Verify::Nothing),
            "verify-ca" => (SslMode::Require, Verify::Chain),
            "verify-full" => (SslMode::Require, Verify::Full),
            other => {
                return Err(Error::Invalid(format!(
                    "sslmode={other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )));
            }
        };
        Ok((ssl_mode, verify, setting("PGSSLROOTCERT")))
    }

    /// A libpq tool with this connection in its environment.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("PGHOST", self.hosts.join(","))
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("PGDATABASE", &self.dbname)
            .env("PGAPPNAME", "lifeboat")
            // Never wait for a password prompt nobody will answer.
            .env("PGCONNECT_TIMEOUT", "30");
        for (k, v) in &self.ssl {
            cmd.env(k, v);
        }
        if let Some(p) = &self.password {
            cmd.env("PGPASSWORD", p);
        }
        cmd
    }

    /// PGPASSWORD, else the first matching `.pgpass` line, as libpq looks them up.
    fn pgpass_password(&self) -> Option<String> {
        if let Ok(p) = std::env::var("PGPASSWORD") {
            return Some(p);
        }
        let file = std::env::var_os("PGPASSFILE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
        let text = std::fs::read_to_string(file).ok()?;
        let host = self.hosts.first()?;
        // libpq matches socket connections against "localhost".
        let host = if host.starts_with('/') {
            "localhost"
        } else {
            host
        };
        let want = [host, &self.port.to_string(), &self.dbname, &self.user];
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .find_map(|line| {
                let fields = pgpass_fields(line);
                (fields.len() == 5
                    && fields[..4]
                        .iter()
                        .zip(want.iter())
                        .all(|(f, w)| f == "*" || f == w))
                .then(|| fields[4].clone())
            })
    }
}

/// Runs a connection until its client is dropped.
async fn drive(
    connection: impl std::future::Future<Output = std::result::Result<(), tokio_postgres::Error>>,
) {
    if let Err(e) = connection.await {
        tracing::debug!("PostgreSQL connection ended: {e}");
    }
}

/// Splits a `.pgpass` line at unescaped colons, undoing `\:` and `\\`.
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => field.extend(chars.next()),
            ':' => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// Takes the libpq TLS options out of a URL or conninfo (lifeboat's client library knows only
/// some of them; the tools get them all through the environment).
fn split_ssl(url: &str) -> (String, Vec<(String, String)>) {
    let mut found = Vec::new();
    let mut take = |pair: &str| -> bool {
        let Some((k, v)) = pair.split_once('=') else {
            return false;
        };
        match SSL_KEYS.iter().find(|(key, _)| *key == k.trim()) {
            Some((_, var)) => {
                found.push(((*var).to_owned(), v.trim().to_owned()));
                true
            }
            None => false,
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query.split('&').filter(|p| !take(p)).collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_owned(),
        }
    } else {
        url.split_whitespace()
            .filter(|p| !take(p))
            .collect::<Vec<_>>()
            .join(" ")
    };
    (rest, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_tls_options_to_the_environment() {
        let (rest, ssl) = split_ssl(
            "postgres://u@db:6432/app?sslmode=verify-full&sslrootcert=/ca.pem&connect_timeout=5",
        );
        assert_eq!(rest, "postgres://u@db:6432/app?connect_timeout=5");
        assert_eq!(
            ssl,
            [
                ("PGSSLMODE".to_owned(), "verify-full".to_owned()),
                ("PGSSLROOTCERT".to_owned(), "/ca.pem".to_owned())
            ]
        );
        let spec = ConnSpec {
            url: Some("postgres://u@db:6432/app?sslmode=require"),
            ..ConnSpec::default()
        };
        let c = Conn::new(&spec).unwrap();
        assert_eq!(
            (
                c.hosts[0].as_str(),
                c.port,
                c.user.as_str(),
                c.dbname.as_str()
            ),
            ("db", 6432, "u", "app")
        );
        let cmd = c.command(Path::new("pg_dump"));
        let envs: Vec<_> = cmd
            .get_envs()
            .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
            .collect();
        assert!(
            envs.iter()
                .any(|(k, v)| k == "PGSSLMODE" && v.as_deref() == Some("require".as_ref()))
        );
    }

    #[test]
    fn scratch_urls_may_leave_out_the_database() {
        assert!(names_database("postgres://u@db/app"));
        assert!(!names_database("postgres://u@db"));
        assert!(!names_database("host=db user=u"));
    }

    #[test]
    fn passwords_in_urls_are_refused() {
        assert!(check_url("postgres://u:hunter2@db/app").is_err());
        assert!(check_url("host=db password=hunter2 dbname=app").is_err());
        assert!(check_url("postgres://u@db/app?sslmode=verify-full").is_ok());
    }

    #[test]
    fn pgpass_lines_split_at_unescaped_colons() {
        assert_eq!(
            pgpass_fields(r"db:5432:*:u:pa\:ss\\"),
            ["db", "5432", "*", "u", r"pa:ss\"]
        );
    }
}
