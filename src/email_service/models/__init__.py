"""email_service.models"""
