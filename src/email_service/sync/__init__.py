"""email_service.sync"""
