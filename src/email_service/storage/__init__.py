"""email_service.storage"""
