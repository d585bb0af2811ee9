"""FlowTestKit: tiny, readable tests for PenguiFlow flows."""

__all__: list[str] = []


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version

        return version("penguiflow-testkit")
    raise AttributeError(f"module 'penguiflow.testkit' has no attribute {name!r}")
