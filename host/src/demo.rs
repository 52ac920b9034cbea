pub async fn run(_dir: &std::path::Path) -> anyhow::Result<()> { anyhow::bail!("todo") }
