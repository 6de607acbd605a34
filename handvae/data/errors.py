class DataError(ValueError):
    """Bad or missing input data. The message names the file, the line or record, and what was expected."""

    def __init__(self, message: str):
        super().__init__(message)
        # Kept apart from args, which Ray extends with retry advice when the error crosses a task.
        self.message = message
