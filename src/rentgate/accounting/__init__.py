"""The operator's side: tenants, keys, prices, pools, costs, reports and checks.

Views and CLI commands call these modules; none of them imports Flask.
"""
