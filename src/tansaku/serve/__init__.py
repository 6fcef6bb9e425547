"""tansaku serve: the web application and OPTIMADE API over a database."""
