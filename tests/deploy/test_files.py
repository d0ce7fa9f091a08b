"""The deploy configuration file loads, and the tools script is valid shell."""

from __future__ import annotations

import os
import subprocess

from tests.deploy.conftest import DEPLOY
from tests.deploy.support import deploy_config, secret_variables


def test_the_deploy_configuration_loads() -> None:
    config = deploy_config({"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"})
    assert {"acme", "globex"} <= set(config.domains)
    assert config.domains["acme"].webchat.enabled
    assert config.kafka.partitions == 6
    assert secret_variables() >= {"TWILIO_AUTH_TOKEN", "META_APP_SECRET", "MAILGUN_SIGNING_KEY"}


def test_install_tools_is_executable_shell() -> None:
    script = DEPLOY / "install-tools.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["sh", "-n", str(script)], check=True)
    # promtool is there in this environment, so the script is a no-op that succeeds.
    subprocess.run(["sh", str(script)], check=True, timeout=30)
