//! `crdgen`: prints the CRDs as YAML (`crdgen | kubectl apply -f -`), or with
//! `--write <deploy dir>` regenerates every generated file under `deploy/`.

use std::path::PathBuf;

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            print!("{}", mfplane_operator::manifests::crds_yaml()?);
            Ok(())
        }
        [flag, dir] if flag == "--write" => {
            let dir = PathBuf::from(dir);
            for file in mfplane_operator::manifests::all()? {
                let path = dir.join(file.path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                std::fs::write(&path, &file.text)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        _ => anyhow::bail!(
            "usage: crdgen [--write <deploy dir>]  (without arguments: print the CRDs)"
        ),
    }
}
