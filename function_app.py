"""The Azure Functions app: registers the blueprints of pipeline.entrypoints.functions, nothing else."""

import azure.functions as func

from pipeline.entrypoints.functions import eventhub, llm_logs, timers

app = func.FunctionApp()
app.register_blueprint(eventhub.bp)
app.register_blueprint(llm_logs.bp)
app.register_blueprint(timers.bp)
