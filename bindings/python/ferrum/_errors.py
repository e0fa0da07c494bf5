"""ferrum.Error and ferrum.ErrorCode (the C++ facade's ferrum::Error / ferrum::ErrorCode)."""
import enum


class ErrorCode(str, enum.Enum):
    """Same names as ferrum::ErrorCode; a member compares equal to its name ("unsupported")."""

    unsupported = "unsupported"
    invalid_argument = "invalid_argument"
    out_of_memory = "out_of_memory"
    device_error = "device_error"
    abi_mismatch = "abi_mismatch"
    internal = "internal"
    load_failed = "load_failed"  # no plugin could be loaded as asked
    config_error = "config_error"  # FERRUM_CONFIG / config file / environment value is malformed

    def __str__(self):
        return self.value


class Error(Exception):
    """Every failure of ferrum: .code (ErrorCode) and .message (names the op or function, the
    argument, what was expected and what was given)."""

    def __init__(self, code, message):
        try:
            code = ErrorCode(code)
        except ValueError:
            code = ErrorCode.internal
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
