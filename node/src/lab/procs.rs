//! The daemons the lab runs inside its namespaces.
//!
//! Each daemon's output goes to a log file in the lab's state directory, so a failed
//! drill can be read afterwards. Dropping the [`Supervisor`] kills every daemon it
//! started: a test that fails or panics leaves no process behind.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use super::netns::Netns;
use super::{LabError, Result};

/// The processes of one lab instance, by name.
#[derive(Debug)]
pub struct Supervisor {
    dir: PathBuf,
    children: BTreeMap<String, Child>,
}

impl Supervisor {
    /// Logs go to `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
            context: format!("creating lab directory {}", dir.display()),
            source,
        })?;
        Ok(Supervisor {
            dir,
            children: BTreeMap::new(),
        })
    }

    /// The lab's state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log file of process `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// Starts `program args` inside `ns` as process `name`, appending its output to
    /// `<dir>/<name>.log`.
    pub fn spawn(
        &mut self,
        name: &str,
        ns: &Netns,
        program: &Path,
        args: &[String],
    ) -> Result<u32> {
        let log_path = self.log_path(name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| LabError::Io {
                context: format!("opening {}", log_path.display()),
                source,
            })?;
        let err = log.try_clone().map_err(|source| LabError::Io {
            context: format!("opening {}", log_path.display()),
            source,
        })?;
        let child = ns
            .exec(&program.to_string_lossy())
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|source| LabError::Io {
                context: format!("starting {} in {}", program.display(), ns.name()),
                source,
            })?;
        let pid = child.id();
        self.children.insert(name.to_string(), child);
        Ok(pid)
    }

    /// Kills process `name` with SIGKILL (a crash, not a shutdown) and reaps it.
    pub fn kill9(&mut self, name: &str) {
        if let Some(mut child) = self.children.remove(name) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM to process `name` and waits for it to exit.
    pub fn terminate(&mut self, name: &str) {
        if let Some(mut child) = self.children.remove(name) {
            // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// Whether process `name` is still running.
    pub fn is_running(&mut self, name: &str) -> bool {
        self.children
            .get_mut(name)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Names of the processes started and not killed.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.children.keys().map(String::as_str)
    }

    /// Kills every process (SIGKILL) and reaps it.
    pub fn kill_all(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.kill_all();
    }
}
