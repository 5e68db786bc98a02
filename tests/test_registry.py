import pytest

from speechpeft.registry import Registry, UnknownNameError


def test_register_and_get_is_case_insensitive_on_lookup():
    registry: Registry[int] = Registry("method")
    registry.register("lora", 1)
    assert registry.get("LoRA") == 1
    assert "lora" in registry and "LORA" in registry and 3 not in registry
    assert list(registry) == ["lora"] and len(registry) == 1


def test_duplicate_registration_raises():
    registry: Registry[int] = Registry("method")
    registry.register("lora", 1)
    with pytest.raises(ValueError, match="method 'lora' is already registered"):
        registry.register("lora", 2)


def test_unknown_name_lists_valid_names():
    registry: Registry[int] = Registry("task")
    registry.register("asr", 1)
    registry.register("tts", 2)
    with pytest.raises(UnknownNameError) as error:
        registry.get("kws")
    assert str(error.value) == "unknown task 'kws'; valid names: asr, tts"


@pytest.mark.parametrize("name", ["LoRA", "", "a b", "-x"])
def test_keys_must_be_lowercase_identifiers(name):
    with pytest.raises(ValueError, match="must be lowercase"):
        Registry("method").register(name, 1)
