"""What production traffic did and cost: drift, budgets and forecasts, savings recommendations, the HTML report."""
