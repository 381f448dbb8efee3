"""email_service.api"""
