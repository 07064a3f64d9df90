//! `snapshot save|status|restore`: etcdctl's and etcdutl's backup commands.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use plus_quorum::{BackupHeader, Cluster, RemoteNode};

use super::Output;

/// Backups: take one from a running cluster, check one, build data directories from one.
#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotOp {
    /// Saves the whole state at one revision from the running cluster's leader (writes go on
    /// meanwhile) to FILE, checked as it arrives. Needs an admin's credential.
    Save {
        /// Where to write it; written as FILE.part, renamed once complete and checked.
        file: PathBuf,
    },
    /// Checks FILE whole (format version, length, checksum) and prints what it holds. Needs
    /// no cluster.
    Status {
        /// The backup.
        file: PathBuf,
    },
    /// Builds one node's data directory of a new cluster from FILE (run it once per member,
    /// each into its own empty directory), then start the nodes on their directories with
    /// the same --cluster. Needs no cluster.
    Restore {
        /// The backup.
        file: PathBuf,
        /// The new data directory (missing or empty).
        #[arg(long)]
        data: PathBuf,
        /// This node's id in the new cluster.
        #[arg(long)]
        id: u64,
        /// The new cluster's members: `ID=HOST:PORT,...`, as the nodes' --peers.
        #[arg(long)]
        peers: String,
        /// The new cluster's name (the nodes' --cluster), stamped into the directory.
        #[arg(long, default_value = "plus")]
        cluster: String,
    },
}

/// `snapshot save`.
pub(crate) async fn save(
    cluster: &Cluster<RemoteNode>,
    file: &Path,
    out: Output,
) -> Result<bool, String> {
    let part = file.with_extension("part");
    let mut writer = tokio::io::BufWriter::new(
        tokio::fs::File::create(&part)
            .await
            .map_err(|e| format!("cannot create {}: {e}", part.display()))?,
    );
    let saved = cluster.save_backup(&mut writer).await;
    // Durable before it takes the name a restore will look for.
    let saved = match saved {
        Ok(header) => writer
            .into_inner()
            .sync_all()
            .await
            .map(|()| header)
            .map_err(|e| format!("cannot sync {}: {e}", part.display())),
        Err(e) => Err(format!("no backup saved: {e}")),
    };
    let header = match saved {
        Ok(header) => header,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    std::fs::rename(&part, file)
        .map_err(|e| format!("cannot rename {} to {}: {e}", part.display(), file.display()))?;
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    match out {
        Output::Json => println!("{}", header_json(&header, file, size)),
        Output::Simple | Output::Table => println!(
            "saved revision {} ({} keys, {} leases, {size} bytes) to {}",
            header.revision,
            header.keys,
            header.leases,
            file.display()
        ),
    }
    Ok(true)
}

/// `snapshot status`.
pub(crate) fn status(file: &Path, out: Output) -> Result<bool, String> {
    let header =
        plus_quorum::verify_backup_file(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    match out {
        Output::Json => println!("{}", header_json(&header, file, size)),
        Output::Simple | Output::Table => {
            let rows = [
                ("revision", header.revision.to_string()),
                ("term", header.term.to_string()),
                ("keys", header.keys.to_string()),
                ("leases", header.leases.to_string()),
                ("voters", format!("{:?}", header.voters)),
                ("taken from", format!("node {}", header.taken_from)),
                ("taken at (unix ms)", header.taken_at_unix_ms.to_string()),
                ("state digest", header.state_digest.clone()),
                ("size", format!("{size} bytes")),
                ("format", format!("version {}, checksum ok", plus_quorum::BACKUP_FORMAT_VERSION)),
            ];
            super::table::print(
                &["field", "value"],
                rows.iter().map(|(k, v)| vec![(*k).to_owned(), v.clone()]),
                out,
            );
        }
    }
    Ok(true)
}

/// `snapshot restore`.
pub(crate) fn restore(
    file: &Path,
    data: &Path,
    id: u64,
    peers: &str,
    cluster: &str,
    out: Output,
) -> Result<bool, String> {
    let members = super::cli::members(peers)?;
    let voters: Vec<u64> = members.iter().map(|(id, _)| *id).collect();
    let (header, snapshot) =
        plus_quorum::read_backup_file(file).map_err(|e| format!("{}: {e}", file.display()))?;
    plus_quorum::restore_data_dir(&snapshot, data, cluster, id, &voters)
        .map_err(|e| e.to_string())?;
    match out {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "restored": data.display().to_string(),
                "id": id,
                "cluster": cluster,
                "revision": header.revision,
                "keys": header.keys,
            })
        ),
        Output::Simple | Output::Table => println!(
            "restored revision {} ({} keys) into {} as node {id} of cluster {cluster}; start it \
             with: quorum_node --id {id} --data {} --peers {peers} --cluster {cluster}",
            header.revision,
            header.keys,
            data.display(),
            data.display()
        ),
    }
    Ok(true)
}

fn header_json(header: &BackupHeader, file: &Path, size: u64) -> serde_json::Value {
    serde_json::json!({
        "file": file.display().to_string(),
        "size": size,
        "format_version": plus_quorum::BACKUP_FORMAT_VERSION,
        "header": header,
    })
}
